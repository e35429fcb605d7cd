package storyden

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// probeClient bounds every probe; probes talk only to a local emulator or
// instance.
var probeClient = &http.Client{Timeout: 10 * time.Second}

// ProbeKey returns the status GET /api/accounts answers for an access key: 200
// when the key authenticates, 401 when it is revoked, expired or unknown.
func ProbeKey(baseURL, key string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, baseURL+"/api/accounts", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// ProbeSignIn returns the status a password sign-in answers, and the session
// cookie on success.
func ProbeSignIn(baseURL, handle, password string) (int, *http.Cookie, error) {
	body, err := json.Marshal(map[string]string{"identifier": handle, "token": password})
	if err != nil {
		return 0, nil, err
	}
	resp, err := probeClient.Post(baseURL+"/api/auth/password/signin", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return 0, nil, err
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "storyden-session" {
			return resp.StatusCode, c, nil
		}
	}
	return resp.StatusCode, nil, nil
}

// ProbeRevoke disables an access key the way an operator would by hand, with
// a password session, and returns the status.
func ProbeRevoke(baseURL, handle, password, keyID string) (int, error) {
	_, session, err := ProbeSignIn(baseURL, handle, password)
	if err != nil || session == nil {
		return 0, err
	}
	req, err := http.NewRequest(http.MethodDelete, baseURL+"/api/auth/access-keys/"+keyID, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Cookie", session.Name+"="+session.Value)
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// ProbeCreateKey creates an access key by hand, as an operator would in the
// Storyden UI, and returns its id.
func ProbeCreateKey(baseURL, handle, password, name string) (string, error) {
	_, session, err := ProbeSignIn(baseURL, handle, password)
	if err != nil || session == nil {
		return "", err
	}
	body, err := json.Marshal(map[string]string{"name": name})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequest(http.MethodPost, baseURL+"/api/auth/access-keys", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cookie", session.Name+"="+session.Value)
	resp, err := probeClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var key struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&key); err != nil {
		return "", err
	}
	return key.ID, nil
}
