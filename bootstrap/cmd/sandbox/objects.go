package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// printObjects asks a running emulator, found in the state file, what it
// holds upstream, and prints one line per object.
func printObjects(out io.Writer, stateFile, name string) error {
	state, err := readState(stateFile)
	if err != nil {
		return err
	}
	url := state[name]["url"]
	if url == "" {
		return fmt.Errorf("%s has no emulator named %q", stateFile, name)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url + "/_sandbox/objects")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var list struct {
		Objects []sandbox.Object `json:"objects"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return fmt.Errorf("%s/_sandbox/objects: %w", url, err)
	}
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "  KIND\tNAME\tID\tSTATE\tLIVE\n")
	for _, o := range list.Objects {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%v\n", o.Kind, o.Name, o.ID, o.State, o.Live)
	}
	if len(list.Objects) == 0 {
		fmt.Fprintf(w, "  (nothing)\n")
	}
	return w.Flush()
}
