package backend

import (
	"testing"
	"time"
)

func TestWALRollbackMinAgeOverride(t *testing.T) {
	cases := map[string]time.Duration{"": defaultWALRollbackMinAge, "5s": 5 * time.Second, "500ms": defaultWALRollbackMinAge, "soon": defaultWALRollbackMinAge}
	for value, want := range cases {
		t.Setenv(walRollbackMinAgeEnv, value)
		if got := walRollbackMinAge(); got != want {
			t.Errorf("%s=%q: %s, want %s", walRollbackMinAgeEnv, value, got, want)
		}
	}
}
