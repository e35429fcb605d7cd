package storx

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/storjgrant"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storjsat"
)

func rootGrant(t *testing.T) string {
	t.Helper()
	sat, err := storjsat.Start(context.Background(), storjsat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sat.Close)
	g, err := sat.NewRootGrant("pass", storjsat.RootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestConnectModes(t *testing.T) {
	grant := rootGrant(t)
	tests := []struct {
		name   string
		values provider.Values
		// want is a substring of the 400, "" for a grant-mode connection.
		want string
	}{
		{name: "grant alone", values: provider.Values{storjgrant.FieldAccessGrant: grant}},
		{name: "grant and developer credentials", values: provider.Values{storjgrant.FieldAccessGrant: grant, fieldEmail: "dev@example.com", fieldPassword: "pw123456"},
			want: `not both: for access-grant mode drop email and password (write email="" password="")`},
		{name: "grant and email", values: provider.Values{storjgrant.FieldAccessGrant: grant, fieldEmail: "dev@example.com"}, want: "drop email"},
		{name: "grant and passphrase", values: provider.Values{storjgrant.FieldAccessGrant: grant, fieldPassphrase: "pp"}, want: "passphrase has no meaning in access-grant mode"},
		{name: "nothing", values: provider.Values{}, want: "give access_grant"},
		{name: "developer without passphrase", values: provider.Values{fieldEmail: "dev@example.com", fieldPassword: "pw123456"}, want: "passphrase is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := Provider{}.Connect(provider.ConnectionConfig{Name: "c", BaseURL: defaultBaseURL, Values: tt.values})
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := conn.(provider.Lister); ok {
					t.Fatal("a grant-mode connection claims to list its upstream")
				}
				if _, ok := conn.(provider.Unlisted); !ok {
					t.Fatal("a grant-mode connection does not say it cannot list")
				}
				return
			}
			if !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Connect = %v, want 400 with %q", err, tt.want)
			}
			if strings.Contains(err.Error(), grant) {
				t.Fatal("the error quotes the grant")
			}
		})
	}
}

func TestCheckRoleForConnection(t *testing.T) {
	grantConn := provider.Values{storjgrant.FieldAccessGrant: "g"}
	devConn := provider.Values{fieldEmail: "dev@example.com"}
	tests := []struct {
		name   string
		conn   provider.Values
		role   provider.Values
		maxTTL time.Duration
		want   string
	}{
		{name: "developer role", conn: devConn, role: provider.Values{fieldUserEmail: "u@example.com"}},
		{name: "developer role without user", conn: devConn, role: provider.Values{}, want: "user_email is required"},
		{name: "grant role", conn: grantConn, role: provider.Values{fieldBuckets: []string{"photos"}}, maxTTL: time.Hour},
		{name: "grant role on the mount's max", conn: grantConn, role: provider.Values{}},
		{name: "grant role under a minute", conn: grantConn, role: provider.Values{}, maxTTL: 30 * time.Second, want: "under a minute"},
		{name: "grant role with a user", conn: grantConn, role: provider.Values{fieldUserEmail: "u@example.com"}, want: "user_email has no meaning"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Provider{}.CheckRoleForConnection(tt.conn, tt.role, tt.maxTTL)
			if tt.want == "" && err != nil || tt.want != "" && (!errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("CheckRoleForConnection = %v, want %q", err, tt.want)
			}
		})
	}
}
