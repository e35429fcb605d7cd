package plugingc

import "testing"

func TestGCPercent(t *testing.T) {
	for _, tc := range []struct {
		gogc    string
		percent int
		set     bool
	}{
		{gogc: "", percent: DefaultGCPercent, set: true},
		{gogc: "100", set: false},
		{gogc: "off", set: false},
	} {
		percent, set := gcPercent(func(name string) string {
			if name == "GOGC" {
				return tc.gogc
			}
			return ""
		})
		if percent != tc.percent || set != tc.set {
			t.Errorf("GOGC=%q: gcPercent = %d, %t; want %d, %t", tc.gogc, percent, set, tc.percent, tc.set)
		}
	}
}
