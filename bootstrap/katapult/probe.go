package katapult

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// probeClient bounds every probe; probes talk only to a local emulator.
var probeClient = &http.Client{Timeout: 10 * time.Second}

// ProbeCreateKey creates an object-storage access key named name in the
// organization with that sub-domain, as an operator would outside Vault
// (tests bind static roles to such keys), and returns its id. baseURL is the
// emulator's address without /core/v1.
func ProbeCreateKey(baseURL, token, organization, name string) (string, error) {
	body, err := json.Marshal(map[string]any{
		"organization":           map[string]string{"sub_domain": organization},
		"object_storage_cluster": map[string]string{"region": "uk-lon-1"},
		"properties":             map[string]string{"name": name},
	})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequest(http.MethodPost, baseURL+"/core/v1/organizations/organization/object_storage/object_storage_cluster/access_keys", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := probeClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Key struct {
			ID string `json:"id"`
		} `json:"object_storage_access_key"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("create access key %q: HTTP %d %v", name, resp.StatusCode, err)
	}
	return out.Key.ID, nil
}
