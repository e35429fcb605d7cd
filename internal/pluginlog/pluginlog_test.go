package pluginlog

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		value      string
		wantLevels []string // of the lines a debug and an info line leave
		problem    bool
	}{
		{value: "", wantLevels: []string{"debug", "info"}},
		{value: "info", wantLevels: []string{"info"}},
		{value: " WARN ", wantLevels: nil},
		{value: "debug", wantLevels: []string{"debug", "info"}},
		{value: "verbose", wantLevels: []string{"debug", "info"}, problem: true},
		// Errors are never silenced: "off" leaves every level on.
		{value: "off", wantLevels: []string{"debug", "info"}, problem: true},
	} {
		var out bytes.Buffer
		logger, problem := New(&out, tc.value)
		if (problem != "") != tc.problem || (tc.problem && !strings.Contains(problem, LevelEnv)) {
			t.Errorf("%s=%q: problem %q", LevelEnv, tc.value, problem)
		}
		logger.Debug("a debug line")
		logger.Info("an info line")
		var levels []string
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if line == "" {
				continue
			}
			var entry struct {
				Level string `json:"@level"`
			}
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("%s=%q: a line Vault cannot parse as hclog JSON: %q: %v", LevelEnv, tc.value, line, err)
			}
			levels = append(levels, entry.Level)
		}
		if strings.Join(levels, ",") != strings.Join(tc.wantLevels, ",") {
			t.Errorf("%s=%q: lines at %v, want %v", LevelEnv, tc.value, levels, tc.wantLevels)
		}
	}
}
