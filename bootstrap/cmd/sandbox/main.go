// Command sandbox starts every upstream emulator on loopback, so the plugin
// (and the real vault binary running it) can be exercised end to end
// without the real services.
//
//	sandbox [-addr 127.0.0.1] [-storyden-port 18105] [-state FILE] [-duration 0]
//	sandbox -state FILE -get storyden.url
//	sandbox -state FILE -objects storyden
//	AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… sandbox -state FILE -s3 storj
//
// Once every emulator listens, the state file receives their URLs and seeded
// root credentials as JSON, e.g.
// {"storyden":{"url":"http://127.0.0.1:18105","username":"vault-admin","password":"…"}}.
// The -get form prints one value from it for shell scripts; -objects prints
// what one emulator holds; -s3 tries S3 credentials on a gateway.
//
// The storj upstream runs only when AUTHSERVICE_BIN names the real Storj
// auth service (make authservice): its entry is the S3 gateway in
// access-grant mode ("url", "bucket"), the auth service ("auth_url"), the
// satellite stand-in's node URL ("satellite") and a root "access_grant".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/dstor"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storable"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
)

// upstream is one emulator the command runs. Adding a provider is one entry
// in upstreams.
type upstream struct {
	name        string
	defaultPort int
	// build returns the emulator and the root credentials seeded into it,
	// which go to the state file next to its URL.
	build func() (sandbox.Emulator, map[string]string, error)
	// attach, if set, runs once the emulator listens, for upstreams with
	// parts that need its URL; it returns more state entries and a
	// function that stops those parts.
	attach func(ctx context.Context, srv *sandbox.Server) (map[string]string, func(), error)
}

var upstreams = []upstream{
	{name: "dstor", defaultPort: 18102, build: buildDstor},
	{name: "storable", defaultPort: 18104, build: buildStorable},
	{name: "storyden", defaultPort: 18105, build: buildStoryden},
	{name: "katapult", defaultPort: 18103, build: buildKatapult},
	{name: "storx", defaultPort: 18101, build: buildStorx},
	// After storx: the auth service checks grants against its satellite.
	{name: "storx-auth", defaultPort: 18111, build: buildStorxAuth},
	// The S3 gateway in access-grant mode, with its satellite and the real
	// Storj auth service behind it; only when AUTHSERVICE_BIN is set.
	{name: "storj", defaultPort: 18112, build: theStorj.build, attach: theStorj.attach},
}

// State is the state file: upstream name → "url" and root credentials.
type State map[string]map[string]string

func buildStoryden() (sandbox.Emulator, map[string]string, error) {
	password := envOr("SANDBOX_STORYDEN_PASSWORD", "sandbox-storyden-admin-pw")
	if len(password) < 8 {
		return nil, nil, errors.New("SANDBOX_STORYDEN_PASSWORD must have at least 8 characters, as Storyden requires")
	}
	emu := storyden.New(storyden.Options{Accounts: []storyden.Account{
		{Handle: "vault-admin", Password: password, Admin: true},
		{Handle: "member", Password: "sandbox-member-pw"},
	}})
	return emu, map[string]string{"username": "vault-admin", "password": password}, nil
}

// storxSatellite is the satellite buildStorx made last, which the
// storx-auth emulator must share.
var storxSatellite *storx.Satellite

// buildStorx seeds one developer with StorX's own rate limit (a burst of 5
// developer auth calls, then 1 per 5 minutes); SANDBOX_STORX_RATE_BURST
// raises the burst for runs that log in more often.
func buildStorx() (sandbox.Emulator, map[string]string, error) {
	burst := 0
	if raw := os.Getenv("SANDBOX_STORX_RATE_BURST"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 {
			return nil, nil, errors.New("SANDBOX_STORX_RATE_BURST must be a whole number of 1 or more")
		}
		burst = n
	}
	email := "vault-developer@sandbox.storx.test"
	password := envOr("SANDBOX_STORX_PASSWORD", "sandbox-storx-developer-pw")
	storxSatellite = storx.New(storx.Options{
		Developers: []storx.Developer{{Email: email, Password: password}},
		RateBurst:  burst,
	})
	return storxSatellite, map[string]string{
		"email": email, "password": password,
		"passphrase": envOr("SANDBOX_STORX_PASSPHRASE", "sandbox-storx-passphrase"),
		"user_email": "vault-app@sandbox.storx.test",
	}, nil
}

func buildStorxAuth() (sandbox.Emulator, map[string]string, error) {
	if storxSatellite == nil {
		return nil, nil, errors.New("the storx entry must come before storx-auth in upstreams")
	}
	return storx.NewAuthService(storxSatellite, storx.AuthOptions{}), nil, nil
}

// buildKatapult seeds one organization with object storage and two buckets,
// and a user API token that may rotate itself. The API is served under
// api_path, as Katapult's is: base_url is url + api_path.
func buildKatapult() (sandbox.Emulator, map[string]string, error) {
	token := envOr("SANDBOX_KATAPULT_API_TOKEN", "sandbox-katapult-api-token")
	emu := katapult.New(katapult.Options{
		Organizations: []katapult.Organization{{SubDomain: "sandbox", Name: "Sandbox", Buckets: []string{"sandbox-data", "sandbox-logs"}}},
		Tokens:        []katapult.Token{{Secret: token, Name: "vault", Organization: "sandbox", User: "vault-admin"}},
	})
	return emu, map[string]string{"api_token": token, "organization": "sandbox", "api_path": "/core/v1", "bucket": "sandbox-data"}, nil
}

// buildDstor seeds one account API key (64 characters, as dStor's are).
func buildDstor() (sandbox.Emulator, map[string]string, error) {
	key := envOr("SANDBOX_DSTOR_API_KEY", "sandboxDstorApiKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ")
	emu := dstor.New(dstor.Options{APIKeys: []dstor.APIKey{{Key: key}}})
	return emu, map[string]string{"api_key": key, "api_path": "/v1"}, nil
}

// buildStorable seeds one API client with Storable's documented 90-minute
// tokens and a token endpoint limited to 60 requests a minute.
func buildStorable() (sandbox.Emulator, map[string]string, error) {
	c := storable.Client{
		ID:     "vault-sandbox-client",
		Secret: envOr("SANDBOX_STORABLE_CLIENT_SECRET", "sandbox-storable-client-secret"),
		APIKey: envOr("SANDBOX_STORABLE_API_KEY", "sandboxStorableApiKey0123456789abcdefghi"),
	}
	emu := storable.New(storable.Options{Clients: []storable.Client{c}})
	return emu, map[string]string{"client_id": c.ID, "client_secret": c.Secret, "api_key": c.APIKey}, nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// config is what the flags say.
type config struct {
	addr      string
	ports     map[string]*int
	stateFile string
	duration  time.Duration
	get       string
	objects   string
	s3        string
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err == nil {
		err = dispatch(cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	cfg := config{ports: map[string]*int{}}
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1", "loopback host to listen on")
	for _, u := range upstreams {
		cfg.ports[u.name] = fs.Int(u.name+"-port", u.defaultPort, "port of the "+u.name+" emulator (0 = any free port)")
	}
	fs.StringVar(&cfg.stateFile, "state", "", "write URLs and seeded credentials here as JSON once listening")
	fs.DurationVar(&cfg.duration, "duration", 0, "stop after this long (0 = until SIGINT or SIGTERM)")
	fs.StringVar(&cfg.get, "get", "", "print one value of the -state file, e.g. storyden.url, and exit")
	fs.StringVar(&cfg.objects, "objects", "", "print what one running emulator of the -state file holds upstream, e.g. storyden, and exit")
	fs.StringVar(&cfg.s3, "s3", "", "PUT an object and LIST the bucket of one running S3 gateway of the -state file, e.g. storj, "+
		"with the credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; exit 1 if refused")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return cfg, nil
}

func dispatch(cfg config) error {
	if cfg.get != "" {
		if cfg.stateFile == "" {
			return errors.New("-get needs -state FILE")
		}
		return printStateValue(os.Stdout, cfg.stateFile, cfg.get)
	}
	if cfg.objects != "" {
		if cfg.stateFile == "" {
			return errors.New("-objects needs -state FILE")
		}
		return printObjects(os.Stdout, cfg.stateFile, cfg.objects)
	}
	if cfg.s3 != "" {
		if cfg.stateFile == "" {
			return errors.New("-s3 needs -state FILE")
		}
		return s3Check(os.Stdout, cfg.stateFile, cfg.s3, os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	return run(ctx, cfg, os.Stderr)
}

// run serves every emulator until ctx ends. The state file exists only
// while they listen, so a script never reads a previous run's URLs.
func run(ctx context.Context, cfg config, log io.Writer) error {
	if cfg.stateFile != "" {
		if err := os.Remove(cfg.stateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	stops, state, err := startAll(ctx, cfg, log)
	defer stopAll(stops)
	if err != nil {
		return err
	}
	for _, u := range upstreams {
		if entry, ok := state[u.name]; ok {
			fmt.Fprintf(log, "sandbox: %s emulator listening on %s\n", u.name, entry["url"])
		}
	}
	if cfg.stateFile != "" {
		if err := writeState(cfg.stateFile, state); err != nil {
			return err
		}
		defer os.Remove(cfg.stateFile)
		fmt.Fprintf(log, "sandbox: state written to %s\n", cfg.stateFile)
	}
	<-ctx.Done()
	fmt.Fprintln(log, "sandbox: stopping")
	return nil
}

// startAll starts every upstream, skipping (with a log line saying why)
// those whose build returns errSkipped. The stop functions end what
// started, even when a later upstream fails.
func startAll(ctx context.Context, cfg config, log io.Writer) ([]func(), State, error) {
	var stops []func()
	state := State{}
	for _, u := range upstreams {
		emu, creds, err := u.build()
		if errors.Is(err, errSkipped) {
			fmt.Fprintf(log, "sandbox: %s %v\n", u.name, err)
			continue
		}
		if err != nil {
			return stops, nil, fmt.Errorf("%s: %w", u.name, err)
		}
		srv, err := sandbox.Start(emu, net.JoinHostPort(cfg.addr, strconv.Itoa(*cfg.ports[u.name])))
		if err != nil {
			return stops, nil, err
		}
		stops = append(stops, func() { _ = srv.Close() })
		entry := map[string]string{"url": srv.URL()}
		maps.Copy(entry, creds)
		if u.attach != nil {
			more, stop, err := u.attach(ctx, srv)
			if err != nil {
				return stops, nil, fmt.Errorf("%s: %w", u.name, err)
			}
			stops = append(stops, stop)
			maps.Copy(entry, more)
		}
		state[u.name] = entry
	}
	return stops, state, nil
}

// stopAll stops in reverse order of start.
func stopAll(stops []func()) {
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}

// writeState writes the file whole (temporary file, then rename) and readable
// only by its owner, since it holds the emulators' root passwords.
func writeState(path string, state State) error {
	body, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".sandbox-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(body, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// printStateValue prints state[upstream][field] for a key "upstream.field".
func printStateValue(out io.Writer, path, key string) error {
	name, field, ok := strings.Cut(key, ".")
	if !ok {
		return fmt.Errorf("-get %q: want UPSTREAM.FIELD, e.g. storyden.url", key)
	}
	state, err := readState(path)
	if err != nil {
		return err
	}
	value, ok := state[name][field]
	if !ok {
		return fmt.Errorf("%s has no %s", path, key)
	}
	_, err = fmt.Fprintln(out, value)
	return err
}

// readState reads a state file that run wrote.
func readState(path string) (State, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var state State
	if err := json.Unmarshal(body, &state); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return state, nil
}
