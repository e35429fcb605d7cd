package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/automatedrotationutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Common connection field names.
const (
	fieldName             = "name"
	fieldProvider         = "provider"
	fieldBaseURL          = "base_url"
	fieldVerifyConnection = "verify_connection"
	fieldAllowedRoles     = "allowed_roles"
	// fieldConfirmAccountChange is never stored: it lets one write move a
	// connection with live credentials to another base URL or account.
	fieldConfirmAccountChange = "confirm_account_change"
)

var commonConfigFields = map[string]bool{
	fieldName: true, fieldProvider: true, fieldBaseURL: true, fieldVerifyConnection: true, fieldAllowedRoles: true, fieldConfirmAccountChange: true,
	fieldMaxLiveCredentials: true, "rotation_period": true, "rotation_schedule": true, "rotation_window": true, "disable_automated_rotation": true, "rotation_policy": true,
	fieldCACert: true, fieldClientCert: true, fieldClientKey: true, fieldTLSServerName: true, fieldProxyURL: true, fieldAllowHTTP: true,
}

func connectionFields(p provider.Provider) []provider.Field { return p.ConnectionFields() }

func (b *backend) pathConfig() []*framework.Path {
	fields := b.providers.schema(connectionFields)
	fields[fieldName] = &framework.FieldSchema{Type: framework.TypeString, Required: true,
		Description: "Name of the connection."}
	fields[fieldProvider] = &framework.FieldSchema{Type: framework.TypeString,
		Description: "Upstream service: one of " + b.providers.list() + ". Required at create; fixed afterwards."}
	fields[fieldBaseURL] = &framework.FieldSchema{Type: framework.TypeString,
		Description: "Address of the upstream API. Defaults to the provider's public address; required for storyden. https:// unless allow_http is true."}
	fields[fieldVerifyConnection] = &framework.FieldSchema{Type: framework.TypeBool, Default: true,
		Description: "Prove the root credential works upstream before storing the connection."}
	fields[fieldAllowedRoles] = &framework.FieldSchema{Type: framework.TypeCommaStringSlice,
		Description: `Roles that may use this connection: names, or "*" for all (the default).`}
	fields[fieldMaxLiveCredentials] = maxLiveFieldSchema("the credentials of all roles using this connection together")
	addTransportFields(fields)
	fields[fieldConfirmAccountChange] = &framework.FieldSchema{Type: framework.TypeBool, Default: false,
		Description: "Allow this write to change base_url or the account of a connection whose credentials are still live upstream. Their revokes then fail until the connection points back at their account. Never stored."}
	automatedrotationutil.AddAutomatedRotationFields(fields)

	return []*framework.Path{
		listPath(configStoragePrefix, "connections", "connection"),
		{
			Pattern:        "config/" + framework.MatchAllRegex(fieldName),
			DisplayAttrs:   &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "connection"},
			Fields:         fields,
			ExistenceCheck: existsUnder(configStoragePrefix),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: writeOperation(b.pathConfigWrite, "Create a connection."),
				logical.UpdateOperation: writeOperation(b.pathConfigWrite, "Update a connection; omitted fields keep their values."),
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathConfigRead, Summary: "Read a connection (never its secrets)."},
				logical.DeleteOperation: writeOperation(b.pathConfigDelete, "Delete a connection."),
			},
			HelpSynopsis: "A named connection to an upstream service: provider, base_url and root credential.",
			HelpDescription: `A connection holds the root credential of one upstream account. Its
provider is fixed once created. Secret fields are write-only: reads never
return them. With verify_connection=true (the default) the credential is
proven upstream before anything is stored. ca_cert, client_cert, client_key,
tls_server_name and proxy_url say how to reach the upstream; http://
addresses need allow_http=true. Upstream redirects are never followed.`,
		},
	}
}

// touchesUpstream reports whether an update changes what the connection uses
// upstream (its address, how it gets there, or a provider field); only then
// is it verified again, since a check can cost a rate-limited login (StorX).
func touchesUpstream(data map[string]any, p provider.Provider) bool {
	for _, name := range append([]string{fieldBaseURL}, transportFields...) {
		if _, ok := data[name]; ok {
			return true
		}
	}
	for _, f := range p.ConnectionFields() {
		if _, ok := data[f.Name]; ok {
			return true
		}
	}
	return false
}

// writeOperation marks a write so performance standbys and secondaries
// forward it to the node that may write.
func writeOperation(cb framework.OperationFunc, summary string) *framework.PathOperation {
	return &framework.PathOperation{
		Callback:                    cb,
		Summary:                     summary,
		ForwardPerformanceStandby:   true,
		ForwardPerformanceSecondary: true,
	}
}

// clusterWriteOperation marks a write that stays in its cluster: forwarded
// from performance standbys, but served by a performance secondary itself,
// since it writes only local storage (see cluster.go).
func clusterWriteOperation(cb framework.OperationFunc, summary string) *framework.PathOperation {
	op := writeOperation(cb, summary)
	op.ForwardPerformanceSecondary = false
	return op
}

// existsUnder is the ExistenceCheck of a path storing NAME under prefix. An
// invalid name does not exist; the write handler then says what is wrong.
func existsUnder(prefix string) framework.ExistenceFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
		name := d.Get(fieldName).(string)
		if !namePattern.MatchString(name) {
			return false, nil
		}
		entry, err := req.Storage.Get(ctx, prefix+name)
		return entry != nil, err
	}
}

// listPath lists the names of the entries written to prefix+NAME (prefix is
// both the path and the storage prefix, e.g. "roles/"). suffix names the
// operation in OpenAPI ("roles"), noun one entry ("role").
func listPath(prefix, suffix, noun string) *framework.Path {
	list := func(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
		names, err := req.Storage.List(ctx, prefix)
		if err != nil {
			return nil, err
		}
		return logical.ListResponse(names), nil
	}
	return &framework.Path{
		Pattern:      prefix + "?$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: suffix},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: &framework.PathOperation{Callback: list, Summary: "List " + noun + " names."},
		},
		HelpSynopsis:    "List the " + noun + "s.",
		HelpDescription: "Lists the names of every " + noun + " written to " + prefix + "NAME.",
	}
}

func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if err := validateName("connection", name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	entry, err := getConnection(ctx, req.Storage, name)
	if err != nil || entry == nil {
		return nil, err
	}
	data := map[string]any{
		fieldProvider:     entry.Provider,
		fieldBaseURL:      entry.BaseURL,
		fieldAllowedRoles: entry.AllowedRoles,
		"object_name_tag": entry.Tag,
	}
	if b.countsLive(entry.Provider) {
		data[fieldMaxLiveCredentials] = entry.MaxLiveCredentials
		live, err := b.live.liveOf(ctx, req.Storage, name, "")
		if err != nil {
			return nil, err
		}
		data[fieldLiveCredentials] = live
	}
	for k, v := range publicTransport(entry.Transport) {
		data[k] = v
	}
	resp := &logical.Response{Data: data}
	if p, ok := b.providers.get(entry.Provider); ok {
		for k, v := range publicValues(p.ConnectionFields(), entry.Values) {
			data[k] = v
		}
		if warning := httpWarning(entry, p); warning != "" {
			resp.AddWarning(warning)
		}
	}
	b.rotationInfo(ctx, req, entry, data)
	return resp, nil
}

func (b *backend) pathConfigDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if err := validateName("connection", name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	defer b.lockConnection(name)()
	// The rotation manager would otherwise keep calling for a connection
	// that is gone; on Vault Community the schedule lived in the entry.
	if err := b.deregisterRotation(ctx, req); err != nil {
		return nil, err
	}
	if err := req.Storage.Delete(ctx, configStoragePrefix+name); err != nil {
		return nil, err
	}
	b.conns.drop(name)
	return nil, nil
}

// pathConfigWrite validates everything, proves the credential upstream when
// asked to, and only then stores the connection. It holds the connection's
// lock from reading the entry to storing it, so a rotation can never finish
// in between and have its new root overwritten with the old one.
func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if err := validateName("connection", name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	defer b.lockConnection(name)()
	existing, err := b.connectionForWrite(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	entry, p, err := b.connectionFromRequest(name, existing, req.Data, d)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if err := parseRotationFields(entry, p, d); err != nil {
		return errorResponseFor(err)
	}
	if !d.Get(fieldConfirmAccountChange).(bool) {
		if msg, err := strandsCredentials(ctx, req.Storage, name, p, existing, entry); err != nil || msg != "" {
			if err != nil {
				return nil, err
			}
			return logical.ErrorResponse(msg), nil
		}
	}
	ctx, cancel := withRequestBudget(ctx)
	defer cancel()
	// A write that changes nothing the upstream sees (allowed_roles, the
	// schedule) keeps the live session: StorX allows few sign-ins.
	var conn provider.Connection
	if existing == nil || touchesUpstream(req.Data, p) {
		if conn, err = b.openConnection(name, entry, entry.Values); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
		if d.Get(fieldVerifyConnection).(bool) {
			if err := conn.Verify(ctx); err != nil {
				conn.Close()
				fix := fmt.Sprintf("fix the %s credentials or base_url", p.Name())
				if hint := transportHint(err); hint != "" {
					fix = hint
				}
				return logical.ErrorResponse(fmt.Sprintf("verify_connection failed, nothing was stored: %v; %s, or write verify_connection=false to store without checking", err, fix)), nil
			}
		}
	}
	closeConn := func() {
		if conn != nil {
			conn.Close()
		}
	}
	managerOp, err := b.scheduleRotation(ctx, req, entry, existing)
	if err != nil {
		closeConn()
		return errorResponseFor(err)
	}
	if err := putConnection(ctx, req.Storage, name, entry); err != nil {
		closeConn()
		if managerOp != "" {
			return nil, fmt.Errorf("write to storage failed but the rotation manager still succeeded; operation=%s, err=%w", managerOp, err)
		}
		return errorResponseFor(err)
	}
	if conn == nil {
		b.conns.rekey(name, existing.Generation, entry.Generation)
	} else {
		b.conns.put(name, entry.Generation, conn)
	}
	if warning := httpWarning(entry, p); warning != "" {
		resp := &logical.Response{}
		resp.AddWarning(warning)
		return resp, nil
	}
	return nil, nil
}

// strandsCredentials refuses, with a message, a write that moves an existing
// connection to another account (see accountFingerprint) while its inventory
// holds credentials not seen revoked: their revokes would then fail until
// the connection points back. Creating a connection never strands anything
// it can see; revoke itself guards leases of a connection deleted and
// written again.
func strandsCredentials(ctx context.Context, s logical.Storage, name string, p provider.Provider, existing, entry *connectionEntry) (string, error) {
	if existing == nil || accountFingerprint(p, existing) == accountFingerprint(p, entry) {
		return "", nil
	}
	live, err := s.List(ctx, inventoryStoragePrefix+name+"/")
	if err != nil || len(live) == 0 {
		return "", err
	}
	var changes []string
	if existing.BaseURL != entry.BaseURL {
		changes = append(changes, fmt.Sprintf("%s from %s to %s", fieldBaseURL, existing.BaseURL, entry.BaseURL))
	}
	for _, f := range accountFields(p) {
		if was, now := existing.Values.String(f.Name), entry.Values.String(f.Name); was != now {
			changes = append(changes, fmt.Sprintf("%s from %q to %q", f.Name, was, now))
		}
	}
	return fmt.Sprintf("this write changes connection %q's %s, the upstream account its credentials live in, while it holds %d credential(s) not yet revoked (see inventory/%s): their revokes would fail until config/%s points back at that account; revoke those leases first (vault lease revoke -prefix on the creds/ path of each role using it), or write again with confirm_account_change=true to strand them; nothing was stored",
		name, strings.Join(changes, " and "), len(live), name, name), nil
}

// connectionForWrite reads the entry a config write builds on. A root left
// staged by an interrupted rotation is resolved first, so that the write's
// check and what it stores start from the root that works upstream; if that
// cannot be told yet, the write goes on from the entry as stored.
func (b *backend) connectionForWrite(ctx context.Context, s logical.Storage, name string) (*connectionEntry, error) {
	existing, err := getConnection(ctx, s, name)
	if err != nil || existing == nil || existing.PendingRoot == nil {
		return existing, err
	}
	if err := b.recoverPendingRootLocked(ctx, s, name, existing); err != nil {
		b.Logger().Debug("a staged root is still unresolved; writing the connection as stored", "connection", name, "error", err)
		return getConnection(ctx, s, name)
	}
	return existing, nil
}

// connectionFromRequest merges the request into the stored connection (or a
// new one) and validates the result.
func (b *backend) connectionFromRequest(name string, existing *connectionEntry, data map[string]any, d *framework.FieldData) (*connectionEntry, provider.Provider, error) {
	creating := existing == nil
	entry := &connectionEntry{AllowedRoles: []string{"*"}, Values: provider.Values{}}
	if !creating {
		copied := *existing
		entry = &copied
	}
	requested, _ := data[fieldProvider].(string)
	switch {
	case creating && requested == "":
		return nil, nil, fmt.Errorf("provider is required: one of %s", b.providers.list())
	case creating:
		entry.Provider = requested
	case requested != "" && requested != existing.Provider:
		return nil, nil, fmt.Errorf("provider cannot change from %s to %s: delete config/%s and write it again, or use another name", existing.Provider, requested, name)
	}
	p, ok := b.providers.get(entry.Provider)
	if !ok {
		return nil, nil, fmt.Errorf("provider %q is not known: use one of %s", entry.Provider, b.providers.list())
	}
	if err := checkFieldNames(data, commonConfigFields, p.ConnectionFields(), b.providers.fieldOwners(connectionFields), p.Name()); err != nil {
		return nil, nil, err
	}
	values, err := applyFields(p.ConnectionFields(), data, entry.Values, creating)
	if err != nil {
		return nil, nil, err
	}
	entry.Values = values
	if entry.Tag == "" {
		if entry.Tag, err = provider.RandomString(objectTagLen, uniqueAlphabet); err != nil {
			return nil, nil, err
		}
	}
	if err := b.applyBaseURL(entry, p, data, creating); err != nil {
		return nil, nil, err
	}
	if err := applyTransport(entry, p, data, d, creating); err != nil {
		return nil, nil, err
	}
	if raw, ok := d.GetOk(fieldAllowedRoles); ok {
		roles := raw.([]string)
		if len(roles) == 0 {
			return nil, nil, fmt.Errorf(`allowed_roles must name at least one role, or "*" for all`)
		}
		for _, role := range roles {
			if role != "*" && validateName("role", role) != nil {
				return nil, nil, fmt.Errorf(`allowed_roles entry %q is not a role name: use role names or "*"`, role)
			}
		}
		entry.AllowedRoles = roles
	}
	if raw, ok := d.GetOk(fieldMaxLiveCredentials); ok {
		entry.MaxLiveCredentials = raw.(int)
	}
	if msg := b.checkMaxLive(entry.MaxLiveCredentials, entry.Provider, fmt.Sprintf("connection %q", name)); msg != "" {
		return nil, nil, requestError(msg)
	}
	return entry, p, nil
}

func (b *backend) applyBaseURL(entry *connectionEntry, p provider.Provider, data map[string]any, creating bool) error {
	raw, given := data[fieldBaseURL].(string)
	switch {
	case given:
	case creating:
		raw = p.DefaultBaseURL()
	default:
		return nil
	}
	if raw == "" {
		return fmt.Errorf("base_url is required for provider %s: the address of its API", p.Name())
	}
	normalized, err := provider.NormalizeURL(fieldBaseURL, "https://api.example.com", raw)
	if err != nil {
		return err
	}
	entry.BaseURL = normalized
	return nil
}

// requestError is a problem the caller must fix: handlers answer it with 400.
type requestError string

func (e requestError) Error() string { return string(e) }

// errorResponseFor turns an error into a 400 when it is the caller's to fix,
// or a 502 when the upstream failed.
func errorResponseFor(err error) (*logical.Response, error) {
	var re requestError
	if errors.Is(err, provider.ErrInvalidInput) || errors.Is(err, errConnectionChanged) || errors.As(err, &re) {
		return logical.ErrorResponse(err.Error()), nil
	}
	var ue *provider.UpstreamError
	if errors.As(err, &ue) {
		return nil, logical.CodedError(502, err.Error())
	}
	return nil, err
}
