package pluginruntime

import "testing"

func TestSetting(t *testing.T) {
	defaults := map[string]int{"GOGC": DefaultGCPercent, "GOMAXPROCS": DefaultMaxProcs}
	for _, tc := range []struct {
		name, env string
		value     int
		set       bool
	}{
		{name: "GOGC", env: "", value: DefaultGCPercent, set: true},
		{name: "GOGC", env: "100", set: false},
		{name: "GOGC", env: "off", set: false},
		{name: "GOMAXPROCS", env: "", value: DefaultMaxProcs, set: true},
		{name: "GOMAXPROCS", env: "4", set: false},
	} {
		getenv := func(name string) string {
			if name == tc.name {
				return tc.env
			}
			return ""
		}
		value, set := setting(getenv, tc.name, defaults[tc.name])
		if value != tc.value || set != tc.set {
			t.Errorf("%s=%q: setting = %d, %t; want %d, %t", tc.name, tc.env, value, set, tc.value, tc.set)
		}
	}
}
