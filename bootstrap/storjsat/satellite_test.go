package storjsat

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"storj.io/common/rpc/rpcstatus"
	"storj.io/uplink"
)

func startSatellite(t *testing.T, opts Options) *Satellite {
	t.Helper()
	sat, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sat.Close)
	return sat
}

func rootAccess(t *testing.T, sat *Satellite, opts RootOptions) *uplink.Access {
	t.Helper()
	serialized, err := sat.NewRootGrant("correct horse", opts)
	if err != nil {
		t.Fatal(err)
	}
	access, err := uplink.ParseAccess(serialized)
	if err != nil {
		t.Fatalf("uplink cannot parse the root grant: %v", err)
	}
	return access
}

func share(t *testing.T, parent *uplink.Access, notAfter time.Time) *uplink.Access {
	t.Helper()
	child, err := parent.Share(uplink.Permission{AllowDownload: true, AllowList: true, NotAfter: notAfter}, uplink.SharePrefix{Bucket: "photos"})
	if err != nil {
		t.Fatal(err)
	}
	return child
}

func serialize(t *testing.T, a *uplink.Access) string {
	t.Helper()
	s, err := a.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// revoke revokes target through uplink over the satellite's DRPC endpoint,
// with header as the project's access.
func revoke(t *testing.T, header, target *uplink.Access) error {
	t.Helper()
	project, err := uplink.OpenProject(context.Background(), header)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = project.Close() }()
	return project.RevokeAccess(context.Background(), target)
}

func TestRootGrantCarriesNodeURL(t *testing.T) {
	sat := startSatellite(t, Options{})
	root := rootAccess(t, sat, RootOptions{})
	if got := root.SatelliteAddress(); got != sat.NodeURL() || !strings.Contains(got, "@127.0.0.1:") {
		t.Fatalf("satellite address %q, want %q (ID@127.0.0.1:PORT)", got, sat.NodeURL())
	}
	if err := sat.CheckGrant(context.Background(), serialize(t, root)); err != nil {
		t.Fatalf("the root grant is refused: %v", err)
	}
}

func TestRevokeAPIKey(t *testing.T) {
	sat := startSatellite(t, Options{})
	root := rootAccess(t, sat, RootOptions{})
	other := rootAccess(t, sat, RootOptions{})
	later := time.Now().Add(time.Hour)
	tests := []struct {
		name string
		// header revokes target; both are built from root, child and grandchild.
		pick     func(root, child, grandchild *uplink.Access) (header, target *uplink.Access)
		wantCode rpcstatus.StatusCode
		wantMsg  string
		// dead and alive say which grants CheckGrant must refuse and accept afterwards.
		dead, alive []string
	}{
		{name: "parent revokes child", pick: func(r, c, g *uplink.Access) (*uplink.Access, *uplink.Access) { return r, c },
			dead: []string{"child", "grandchild"}, alive: []string{"root"}},
		{name: "child revokes grandchild", pick: func(r, c, g *uplink.Access) (*uplink.Access, *uplink.Access) { return c, g },
			dead: []string{"grandchild"}, alive: []string{"root", "child"}},
		{name: "root revokes grandchild", pick: func(r, c, g *uplink.Access) (*uplink.Access, *uplink.Access) { return r, g },
			dead: []string{"grandchild"}, alive: []string{"root", "child"}},
		{name: "a key cannot revoke itself", pick: func(r, c, g *uplink.Access) (*uplink.Access, *uplink.Access) { return c, c },
			wantCode: rpcstatus.PermissionDenied, wantMsg: "Unauthorized attempt to revoke macaroon", alive: []string{"root", "child", "grandchild"}},
		{name: "a child cannot revoke its parent", pick: func(r, c, g *uplink.Access) (*uplink.Access, *uplink.Access) { return c, r },
			wantCode: rpcstatus.PermissionDenied, wantMsg: "Unauthorized attempt to revoke macaroon", alive: []string{"root", "child", "grandchild"}},
		{name: "another project's key is invalid here", pick: func(r, c, g *uplink.Access) (*uplink.Access, *uplink.Access) { return other, c },
			wantCode: rpcstatus.InvalidArgument, wantMsg: "Macaroon to revoke invalid", alive: []string{"root", "child", "grandchild"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			child := share(t, root, later)
			grandchild, err := child.Share(uplink.Permission{AllowDownload: true, NotAfter: later})
			if err != nil {
				t.Fatal(err)
			}
			header, target := tt.pick(root, child, grandchild)
			err = revoke(t, header, target)
			if tt.wantMsg == "" && err != nil {
				t.Fatalf("revoke failed: %v", err)
			}
			if tt.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantMsg)) {
				t.Fatalf("revoke error %v, want %q", err, tt.wantMsg)
			}
			if tt.wantMsg != "" && !errors.Is(err, uplink.ErrPermissionDenied) && tt.wantCode == rpcstatus.PermissionDenied {
				t.Fatalf("revoke error %v is not uplink.ErrPermissionDenied", err)
			}
			grants := map[string]string{"root": serialize(t, root), "child": serialize(t, child), "grandchild": serialize(t, grandchild)}
			for _, name := range tt.dead {
				if err := sat.CheckGrant(context.Background(), grants[name]); !errors.Is(err, ErrRevoked) {
					t.Errorf("%s after revoke: CheckGrant = %v, want ErrRevoked", name, err)
				}
			}
			for _, name := range tt.alive {
				if err := sat.CheckGrant(context.Background(), grants[name]); err != nil {
					t.Errorf("%s after revoke: CheckGrant = %v, want nil", name, err)
				}
			}
		})
	}
}

func TestRevokeTwiceSucceeds(t *testing.T) {
	sat := startSatellite(t, Options{})
	root := rootAccess(t, sat, RootOptions{})
	child := share(t, root, time.Now().Add(time.Hour))
	for i := range 2 {
		if err := revoke(t, root, child); err != nil {
			t.Fatalf("revoke %d: %v", i+1, err)
		}
	}
	if got := sat.RevokeCalls(); got != 2 {
		t.Fatalf("RevokeCalls = %d, want 2", got)
	}
}

func TestCheckGrant(t *testing.T) {
	now := time.Now()
	clock := now
	sat := startSatellite(t, Options{Now: func() time.Time { return clock }})
	root := rootAccess(t, sat, RootOptions{})
	auditable := rootAccess(t, sat, RootOptions{Auditable: true})
	elsewhere := startSatellite(t, Options{})
	foreign := rootAccess(t, elsewhere, RootOptions{})
	tests := []struct {
		name    string
		grant   string
		at      time.Time
		wantErr error
	}{
		{name: "live child", grant: serialize(t, share(t, root, now.Add(time.Hour))), at: now},
		{name: "child past NotAfter", grant: serialize(t, share(t, root, now.Add(time.Hour))), at: now.Add(2 * time.Hour), wantErr: ErrExpired},
		{name: "not a grant", grant: "hello", at: now, wantErr: ErrNotAGrant},
		{name: "another satellite's grant", grant: serialize(t, foreign), at: now, wantErr: ErrForeignSatellite},
		{name: "auditable root itself", grant: serialize(t, auditable), at: now},
		{name: "locally derived child of an auditable key", grant: serialize(t, share(t, auditable, now.Add(time.Hour))), at: now, wantErr: ErrUnregisteredTail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock = tt.at
			err := sat.CheckGrant(context.Background(), tt.grant)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("CheckGrant = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestCheckGrantUnknownKey: a grant whose head the satellite never issued,
// as after a satellite restart, is refused.
func TestCheckGrantUnknownKey(t *testing.T) {
	first := startSatellite(t, Options{})
	grant := serialize(t, rootAccess(t, first, RootOptions{}))
	// Same satellite, keys forgotten.
	first.mu.Lock()
	first.keys = map[string]*rootKey{}
	first.mu.Unlock()
	if err := first.CheckGrant(context.Background(), grant); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("CheckGrant = %v, want ErrUnknownKey", err)
	}
}
