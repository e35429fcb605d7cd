package backend

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// withClock gives the schedule a settable clock.
func (e *testEnv) withClock() *testutil.Clock {
	clock := testutil.NewClock(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	e.b.now = clock.Now
	return clock
}

// tick runs the periodic function as Vault's rollback manager does each minute.
func (e *testEnv) tick() error {
	return e.b.periodic(context.Background(), &logical.Request{Storage: e.storage})
}

func (e *testEnv) passwordChanges() int {
	return e.upstream.Calls()["PATCH /api/auth/password"]
}

func TestSchedule_CommunityRotatesOnItsOwnClock(t *testing.T) {
	env := newTestEnv(t)
	clock := env.withClock()
	env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{"rotation_period": "1m"}))
	env.mustOK(logical.CreateOperation, "roles/app", map[string]any{"connection": "main"})

	read := env.mustOK(logical.ReadOperation, "config/main", nil)
	if read.Data["rotation_period"] != float64(60) || read.Data["next_vault_rotation"] != "2026-11-22T12:01:00Z" {
		t.Fatalf("config read: rotation_period=%v next_vault_rotation=%v", read.Data["rotation_period"], read.Data["next_vault_rotation"])
	}
	clock.Advance(30 * time.Second)
	if err := env.tick(); err != nil || env.passwordChanges() != 0 {
		t.Fatalf("rotated before it was due: %v, %d changes", err, env.passwordChanges())
	}
	clock.Advance(31 * time.Second)
	if err := env.tick(); err != nil || env.passwordChanges() != 1 {
		t.Fatalf("not rotated when due: %v, %d changes", err, env.passwordChanges())
	}
	if env.signInStatus(adminHandle, adminPassword) != http.StatusUnauthorized {
		t.Fatal("the old password still works after the scheduled rotation")
	}
	env.issue()
	read = env.mustOK(logical.ReadOperation, "config/main", nil)
	if read.Data["last_vault_rotation"] != "2026-11-22T12:01:01Z" || read.Data["next_vault_rotation"] != "2026-11-22T12:02:01Z" {
		t.Fatalf("after rotation: last=%v next=%v", read.Data["last_vault_rotation"], read.Data["next_vault_rotation"])
	}
	// A manual rotation restarts the period.
	clock.Advance(30 * time.Second)
	env.mustOK(logical.UpdateOperation, "rotate-root/main", nil)
	read = env.mustOK(logical.ReadOperation, "config/main", nil)
	if read.Data["next_vault_rotation"] != "2026-11-22T12:02:31Z" {
		t.Fatalf("manual rotation did not restart the period: next=%v", read.Data["next_vault_rotation"])
	}
	// Two more periods, two more rotations, and creds keep issuing.
	for i := 0; i < 2; i++ {
		clock.Advance(61 * time.Second)
		if err := env.tick(); err != nil {
			t.Fatal(err)
		}
		env.issue()
	}
	if env.passwordChanges() != 4 {
		t.Fatalf("password changes = %d, want 4", env.passwordChanges())
	}
}

func TestSchedule_FailureIsVisibleAndBackedOff(t *testing.T) {
	env := newTestEnv(t)
	clock := env.withClock()
	env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{"rotation_period": "10m"}))
	env.upstream.AddFault(sandbox.Fault{Method: http.MethodPatch, Path: "/api/auth/password", Status: http.StatusInternalServerError})
	clock.Advance(10 * time.Minute)
	if err := env.tick(); err == nil {
		t.Fatal("a failed scheduled rotation was not reported")
	}
	read := env.mustOK(logical.ReadOperation, "config/main", nil)
	if !strings.Contains(read.Data["last_rotation_error"].(string), "HTTP 500") || read.Data["rotation_failures"] != 1 {
		t.Fatalf("the failure is not visible on config read: %v", read.Data)
	}
	if read.Data["next_vault_rotation"] != "2026-11-22T12:11:00Z" {
		t.Fatalf("first retry at %v, want one minute later", read.Data["next_vault_rotation"])
	}
	clock.Advance(time.Minute)
	_ = env.tick()
	read = env.mustOK(logical.ReadOperation, "config/main", nil)
	if read.Data["rotation_failures"] != 2 || read.Data["next_vault_rotation"] != "2026-11-22T12:13:00Z" {
		t.Fatalf("second failure: %v", read.Data)
	}
	// Ticks before the backoff ends do not touch the upstream.
	before := env.passwordChanges()
	clock.Advance(time.Minute)
	_ = env.tick()
	if env.passwordChanges() != before {
		t.Fatal("retried before the backoff ended")
	}
	env.upstream.ClearFaults()
	clock.Advance(time.Minute)
	if err := env.tick(); err != nil {
		t.Fatal(err)
	}
	read = env.mustOK(logical.ReadOperation, "config/main", nil)
	if _, ok := read.Data["last_rotation_error"]; ok {
		t.Fatal("the error is still shown after a successful rotation")
	}
	if env.signInStatus(adminHandle, env.storedPassword("main")) != http.StatusOK {
		t.Fatal("the stored root does not work")
	}
}

func TestSchedule_CronWindowAndSwitchingOff(t *testing.T) {
	env := newTestEnv(t)
	clock := env.withClock()
	env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{"rotation_schedule": "*/15 * * * *", "rotation_window": "1h"}))
	read := env.mustOK(logical.ReadOperation, "config/main", nil)
	if read.Data["next_vault_rotation"] != "2026-11-22T12:15:00Z" || read.Data["rotation_schedule"] != "*/15 * * * *" {
		t.Fatalf("cron schedule: %v", read.Data)
	}
	clock.Advance(16 * time.Minute)
	if err := env.tick(); err != nil || env.passwordChanges() != 1 {
		t.Fatalf("cron rotation: %v %d", err, env.passwordChanges())
	}
	// Vault was down past the window: the rotation waits for the next slot.
	clock.Advance(3 * time.Hour)
	if err := env.tick(); err != nil || env.passwordChanges() != 1 {
		t.Fatalf("rotated outside its window: %v %d", err, env.passwordChanges())
	}
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"disable_automated_rotation": true})
	read = env.mustOK(logical.ReadOperation, "config/main", nil)
	if _, ok := read.Data["next_vault_rotation"]; ok {
		t.Fatal("a disabled schedule still shows a next rotation")
	}
	clock.Advance(24 * time.Hour)
	if err := env.tick(); err != nil || env.passwordChanges() != 1 {
		t.Fatalf("a disabled schedule rotated: %v %d", err, env.passwordChanges())
	}
}

func TestSchedule_BadRotationFieldsAre400(t *testing.T) {
	cases := []struct {
		fields map[string]any
		want   string
	}{
		{map[string]any{"rotation_period": "30s"}, "rotation_period must be 1m0s or more"},
		{map[string]any{"rotation_period": "1h", "rotation_schedule": "@daily"}, "mutually exclusive"},
		{map[string]any{"rotation_window": "1h"}, "rotation_window without rotation_schedule"},
		{map[string]any{"rotation_schedule": "not a cron"}, "rotation_schedule"},
	}
	for _, tc := range cases {
		env := newTestEnv(t)
		env.mustBadRequest(logical.CreateOperation, "config/main", env.storydenConfig(tc.fields), tc.want)
		if keys, _ := env.storage.List(context.Background(), "config/"); len(keys) != 0 {
			t.Fatalf("%v: a failed write stored %v", tc.fields, keys)
		}
	}
}

// fixedKeyProvider stands for a provider whose API cannot rotate its root.
type fixedKeyProvider struct{}

func (fixedKeyProvider) Name() string                       { return "fixedkey" }
func (fixedKeyProvider) DefaultBaseURL() string             { return "https://fixed.example.com" }
func (fixedKeyProvider) ConnectionFields() []provider.Field { return nil }
func (fixedKeyProvider) RoleFields() []provider.Field       { return nil }
func (fixedKeyProvider) ValidateRole(provider.Values) error { return nil }
func (fixedKeyProvider) Connect(provider.ConnectionConfig) (provider.Connection, error) {
	return fixedKeyConnection{}, nil
}

type fixedKeyConnection struct{ provider.Connection }

func (fixedKeyConnection) Verify(context.Context) error { return nil }
func (fixedKeyConnection) Close()                       {}
func (fixedKeyConnection) RotateRoot(context.Context, func(provider.Values) error) (provider.Values, error) {
	return nil, provider.ErrRotationUnsupported
}

func TestSchedule_ProviderThatCannotRotateRefusesRotation(t *testing.T) {
	env := newTestEnv(t)
	env.b.providers = newRegistry(fixedKeyProvider{})
	env.mustBadRequest(logical.CreateOperation, "config/fixed", map[string]any{"provider": "fixedkey", "rotation_period": "1h"},
		"provider fixedkey cannot rotate its root credential through its API")
	env.mustOK(logical.CreateOperation, "config/fixed", map[string]any{"provider": "fixedkey"})
	env.mustBadRequest(logical.UpdateOperation, "rotate-root/fixed", nil,
		"provider fixedkey cannot rotate its root credential through its API (root rotation is not supported); rotate it in the provider's console, then write config/fixed")
}

func TestSchedule_EnterpriseRegistersWithTheRotationManager(t *testing.T) {
	env := newTestEnv(t)
	sys := env.b.System().(*testSystemView)
	sys.enterprise = true
	env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{"rotation_period": "1h"}))
	job := sys.registered["config/main"]
	if job == nil || job.RotationPeriod != time.Hour || job.MountPoint != "apikeys/" {
		t.Fatalf("registered job: %+v", job)
	}
	read := env.mustOK(logical.ReadOperation, "config/main", nil)
	if _, ok := read.Data["next_vault_rotation"]; !ok {
		t.Fatal("config read does not show the rotation manager's next rotation")
	}
	// The rotation manager calls back with the registered path.
	_, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.RotationOperation, Path: "config/main", Storage: env.storage})
	if err != nil || env.passwordChanges() != 1 {
		t.Fatalf("RotateCredential: %v, %d changes", err, env.passwordChanges())
	}
	// The plugin's own schedule stays idle on Enterprise.
	env.withClock().Advance(48 * time.Hour)
	if err := env.tick(); err != nil || env.passwordChanges() != 1 {
		t.Fatalf("the plugin rotated on its own under a rotation manager: %v %d", err, env.passwordChanges())
	}
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"rotation_period": 0})
	if _, ok := sys.registered["config/main"]; ok {
		t.Fatal("rotation_period=0 did not deregister the job")
	}
	// Storage failing after the manager accepted a job gets the standard error.
	env.storage.FailPut(true)
	_, err = env.request(logical.UpdateOperation, "config/main", map[string]any{"rotation_period": "2h"})
	env.storage.FailPut(false)
	if err == nil || !strings.Contains(err.Error(), "write to storage failed but the rotation manager still succeeded; operation=registration") {
		t.Fatalf("err = %v", err)
	}
}

func TestSchedule_OtherWritesDoNotPostponeAndPeriodReplacesSchedule(t *testing.T) {
	env := newTestEnv(t)
	clock := env.withClock()
	env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{"rotation_period": "1h"}))
	clock.Advance(50 * time.Minute)
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"allowed_roles": "app"})
	read := env.mustOK(logical.ReadOperation, "config/main", nil)
	if read.Data["next_vault_rotation"] != "2026-11-22T13:00:00Z" {
		t.Fatalf("an unrelated write moved the next rotation to %v", read.Data["next_vault_rotation"])
	}
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"rotation_schedule": "0 * * * *"})
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"rotation_period": "2h"})
	read = env.mustOK(logical.ReadOperation, "config/main", nil)
	if _, ok := read.Data["rotation_schedule"]; ok || read.Data["rotation_period"] != float64(7200) {
		t.Fatalf("a new rotation_period did not replace the stored schedule: %v", read.Data)
	}
}

// Every documented way of switching scheduled rotation off works whichever
// kind of schedule is stored, and on Enterprise it deregisters the job.
func TestSchedule_EveryWayOfSwitchingOff(t *testing.T) {
	cron := map[string]any{"rotation_schedule": "*/15 * * * *", "rotation_window": "1h"}
	period := map[string]any{"rotation_period": "1h"}
	cases := []struct {
		name   string
		stored map[string]any
		write  map[string]any
		// kept is what the read still shows (disable keeps the settings).
		kept map[string]any
	}{
		{"schedule, then rotation_period=0", cron, map[string]any{"rotation_period": 0}, nil},
		{"schedule, then rotation_schedule empty", cron, map[string]any{"rotation_schedule": ""}, nil},
		{"schedule, then both cleared", cron, map[string]any{"rotation_schedule": "", "rotation_period": 0}, nil},
		{"schedule, then disabled", cron, map[string]any{"disable_automated_rotation": true},
			map[string]any{"rotation_schedule": "*/15 * * * *", "rotation_window": float64(3600)}},
		{"period, then rotation_period=0", period, map[string]any{"rotation_period": 0}, nil},
		{"period, then rotation_schedule empty", period, map[string]any{"rotation_schedule": ""}, nil},
		{"period, then both cleared", period, map[string]any{"rotation_schedule": "", "rotation_period": 0}, nil},
		{"period, then disabled", period, map[string]any{"disable_automated_rotation": true},
			map[string]any{"rotation_period": float64(3600)}},
	}
	for _, tc := range cases {
		for _, enterprise := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/enterprise=%v", tc.name, enterprise), func(t *testing.T) {
				env := newTestEnv(t)
				sys := env.b.System().(*testSystemView)
				sys.enterprise = enterprise
				clock := env.withClock()
				env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(tc.stored))
				env.mustOK(logical.UpdateOperation, "config/main", tc.write)

				read := env.mustOK(logical.ReadOperation, "config/main", nil)
				for _, field := range []string{"next_vault_rotation", "rotation_schedule", "rotation_window", "rotation_period"} {
					got, shown := read.Data[field]
					want, kept := tc.kept[field]
					if shown != kept || got != want {
						t.Errorf("read shows %s=%v (shown %v), want %v (shown %v)", field, got, shown, want, kept)
					}
				}
				if _, ok := sys.registered["config/main"]; ok {
					t.Error("the rotation manager still holds the job")
				}
				// Past both the period and the cron slot, inside its window.
				clock.Advance(61 * time.Minute)
				if err := env.tick(); err != nil || env.passwordChanges() != 0 {
					t.Fatalf("rotated after scheduled rotation was switched off: %v, %d changes", err, env.passwordChanges())
				}
			})
		}
	}
}
