package backend

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// The engine's metrics, served at metrics: counters kept in memory by this
// node since the plugin started (Prometheus handles their resets), and
// gauges read from storage at each scrape. Labels carry only names an
// operator chose (connections, roles), provider names, fixed verbs and
// statuses, never a lease id or an upstream object name, so the number of
// series stays bounded by the configuration.

// Kinds of operation counted, each its own counter.
const (
	opIssue      = "issues"
	opRevoke     = "revokes"
	opRenew      = "renewals"
	opRollback   = "rollbacks"
	opRotation   = "rotations"
	opTidyDelete = "tidy_deletions"
)

// Outcomes of a counted operation.
const (
	outcomeSuccess = "success"
	outcomeFailure = "failure"
	// outcomeCapReached is an issue refused by max_live_credentials.
	outcomeCapReached = "cap_reached"
)

// metricPrefix starts every metric name.
const metricPrefix = "vault_apikeys_"

// latencyBuckets are the upper bounds, in seconds, of the upstream latency
// histogram: from a fast local API to the 30s request timeout.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// opKey identifies one counter series.
type opKey struct{ kind, connection, provider, role, outcome string }

// callKey identifies one upstream latency series; status is the HTTP status
// or "error" when no answer came.
type callKey struct{ provider, op, status string }

// waitKey identifies a rate-limit wait or retry series.
type waitKey struct{ provider, op string }

// histogram is a latency histogram, made cumulative when rendered: counts[i]
// is the calls that took at most latencyBuckets[i] and more than the bound
// before; the last count is the calls over every bound.
type histogram struct {
	counts []uint64
	sum    float64
}

// metrics is one backend's counters. One mutex guards small maps: an update
// is a map lookup and an add, far below the upstream call it counts.
type metrics struct {
	mu          sync.Mutex
	ops         map[opKey]uint64
	calls       map[callKey]*histogram
	rateLimited map[waitKey]uint64
	retries     map[waitKey]uint64
	// eventsDropped counts events a full queue dropped; see events.go.
	eventsDropped uint64
}

func newMetrics() *metrics {
	return &metrics{ops: map[opKey]uint64{}, calls: map[callKey]*histogram{}, rateLimited: map[waitKey]uint64{}, retries: map[waitKey]uint64{}}
}

// count adds one operation of kind.
func (m *metrics) count(kind, connection, providerName, role, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ops[opKey{kind, connection, providerName, role, outcome}]++
}

// countErr adds one operation whose outcome err decides.
func (m *metrics) countErr(kind, connection, providerName, role string, err error) {
	outcome := outcomeSuccess
	if err != nil {
		outcome = outcomeFailure
	}
	m.count(kind, connection, providerName, role, outcome)
}

// observer is what the connections of provider report their calls to.
func (m *metrics) observer(providerName string) provider.Observer {
	return &callObserver{m: m, provider: providerName}
}

// callObserver is a provider.Observer feeding metrics.
type callObserver struct {
	m        *metrics
	provider string
}

// UpstreamCall records one exchange in the latency histogram.
func (o *callObserver) UpstreamCall(op string, status int, took time.Duration) {
	label := "error"
	if status != 0 {
		label = strconv.Itoa(status)
	}
	secs := took.Seconds()
	i, _ := slices.BinarySearch(latencyBuckets, secs)
	o.m.mu.Lock()
	defer o.m.mu.Unlock()
	key := callKey{o.provider, op, label}
	h := o.m.calls[key]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets)+1)}
		o.m.calls[key] = h
	}
	h.counts[i]++
	h.sum += secs
}

// UpstreamRateLimited counts a wait the upstream asked for.
func (o *callObserver) UpstreamRateLimited(op string) {
	o.m.mu.Lock()
	defer o.m.mu.Unlock()
	o.m.rateLimited[waitKey{o.provider, op}]++
}

// UpstreamRetry counts a retried call.
func (o *callObserver) UpstreamRetry(op string) {
	o.m.mu.Lock()
	defer o.m.mu.Unlock()
	o.m.retries[waitKey{o.provider, op}]++
}

// family is one metric with its samples, the form both renderings share.
type family struct {
	Name    string   `json:"name"`
	Help    string   `json:"help"`
	Type    string   `json:"type"`
	Samples []sample `json:"samples"`
}

// sample is one value; Suffix is _bucket, _sum or _count of a histogram.
type sample struct {
	Suffix string            `json:"suffix,omitempty"`
	Labels map[string]string `json:"labels"`
	Value  float64           `json:"value"`
}

// labelOrder fixes the order labels are written in, for stable output.
var labelOrder = []string{"connection", "provider", "role", "op", "status", "outcome", "le"}

var opHelp = map[string]string{
	opIssue:      "Credentials issued through creds/, by outcome; cap_reached counts reads refused by max_live_credentials.",
	opRevoke:     "Lease revocations, by outcome; a failure is retried by Vault.",
	opRenew:      "Lease renewals, by outcome.",
	opRollback:   "Upstream objects of failed or interrupted issues removed, by outcome.",
	opRotation:   "Root (role empty) and static-role rotations, by outcome.",
	opTidyDelete: "Upstream objects tidy deleted, by outcome.",
}

// eventDropped counts an event the full queue dropped.
func (m *metrics) eventDropped() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.eventsDropped++
}

// snapshot renders the counters as families, sorted.
func (m *metrics) snapshot() []family {
	m.mu.Lock()
	defer m.mu.Unlock()
	byKind := map[string]*family{}
	for _, kind := range []string{opIssue, opRevoke, opRenew, opRollback, opRotation, opTidyDelete} {
		byKind[kind] = &family{Name: metricPrefix + kind + "_total", Help: opHelp[kind], Type: "counter"}
	}
	for k, v := range m.ops {
		f := byKind[k.kind]
		f.Samples = append(f.Samples, sample{Labels: map[string]string{"connection": k.connection, "provider": k.provider, "role": k.role, "outcome": k.outcome}, Value: float64(v)})
	}
	var out []family
	for _, kind := range []string{opIssue, opRevoke, opRenew, opRollback, opRotation, opTidyDelete} {
		out = append(out, *byKind[kind])
	}
	latency := family{Name: metricPrefix + "upstream_request_duration_seconds", Type: "histogram",
		Help: "Duration of each HTTP exchange with an upstream API (each retry is one), by provider, operation verb and HTTP status (error: no answer)."}
	for k, h := range m.calls {
		labels := func(le string) map[string]string {
			l := map[string]string{"provider": k.provider, "op": k.op, "status": k.status}
			if le != "" {
				l["le"] = le
			}
			return l
		}
		var cumulative uint64
		for i, bound := range latencyBuckets {
			cumulative += h.counts[i]
			latency.Samples = append(latency.Samples, sample{Suffix: "_bucket", Labels: labels(strconv.FormatFloat(bound, 'g', -1, 64)), Value: float64(cumulative)})
		}
		total := cumulative + h.counts[len(latencyBuckets)]
		latency.Samples = append(latency.Samples,
			sample{Suffix: "_bucket", Labels: labels("+Inf"), Value: float64(total)},
			sample{Suffix: "_sum", Labels: labels(""), Value: h.sum},
			sample{Suffix: "_count", Labels: labels(""), Value: float64(total)})
	}
	out = append(out, latency)
	waits := family{Name: metricPrefix + "upstream_rate_limited_total", Type: "counter",
		Help: "Waits an upstream asked for with HTTP 429, by provider and operation verb."}
	for k, v := range m.rateLimited {
		waits.Samples = append(waits.Samples, sample{Labels: map[string]string{"provider": k.provider, "op": k.op}, Value: float64(v)})
	}
	retries := family{Name: metricPrefix + "upstream_retries_total", Type: "counter",
		Help: "Upstream calls tried again after a failed attempt, by provider and operation verb."}
	for k, v := range m.retries {
		retries.Samples = append(retries.Samples, sample{Labels: map[string]string{"provider": k.provider, "op": k.op}, Value: float64(v)})
	}
	dropped := family{Name: metricPrefix + "events_dropped_total", Type: "counter",
		Help:    "Events not sent because the plugin's queue of events waiting to be sent was full (Vault's event delivery is best effort too).",
		Samples: []sample{{Labels: map[string]string{}, Value: float64(m.eventsDropped)}}}
	out = append(out, waits, retries, dropped)
	for i := range out {
		sortSamples(out[i].Samples)
	}
	return out
}

// sortSamples orders samples by their rendered labels; a histogram's
// buckets keep their order, since the sort is stable and le is last.
func sortSamples(samples []sample) {
	slices.SortStableFunc(samples, func(a, b sample) int {
		return strings.Compare(seriesKey(a.Labels), seriesKey(b.Labels))
	})
}

// seriesKey is labels without le, for sorting.
func seriesKey(labels map[string]string) string {
	var sb strings.Builder
	for _, name := range labelOrder {
		if v, ok := labels[name]; ok && name != "le" {
			sb.WriteString(v)
			sb.WriteByte(0)
		}
	}
	return sb.String()
}

// gauges reads from storage what the counters cannot know: the live
// credentials of each role and the age of each connection's root.
func (b *backend) gauges(ctx context.Context, s logical.Storage) ([]family, error) {
	live := family{Name: metricPrefix + "live_credentials", Type: "gauge",
		Help: "Credentials issued and not yet revoked, by role, as the inventory counts them (the count max_live_credentials caps); dstor and storable are not counted."}
	age := family{Name: metricPrefix + "root_rotation_age_seconds", Type: "gauge",
		Help: "Seconds since the connection's root credential was last rotated successfully; absent until the first rotation."}
	period := family{Name: metricPrefix + "root_rotation_period_seconds", Type: "gauge",
		Help: "The connection's rotation_period, when it has one."}
	names, err := s.List(ctx, configStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	now := b.now()
	for _, name := range names {
		entry, err := getConnection(ctx, s, name)
		if err != nil {
			return nil, err
		}
		if entry == nil {
			continue
		}
		conn := map[string]string{"connection": name, "provider": entry.Provider}
		if !entry.LastRotation.IsZero() {
			age.Samples = append(age.Samples, sample{Labels: conn, Value: math.Max(0, now.Sub(entry.LastRotation).Seconds())})
		}
		if entry.Rotation.active() && entry.Rotation.RotationPeriod > 0 {
			period.Samples = append(period.Samples, sample{Labels: conn, Value: entry.Rotation.RotationPeriod.Seconds()})
		}
		if !b.countsLive(entry.Provider) {
			continue
		}
		byRole, err := b.live.byRole(ctx, s, name)
		if err != nil {
			return nil, err
		}
		for role, n := range byRole {
			live.Samples = append(live.Samples, sample{Labels: map[string]string{"connection": name, "provider": entry.Provider, "role": role}, Value: float64(n)})
		}
	}
	procs := family{Name: metricPrefix + "plugin_gomaxprocs", Type: "gauge",
		Help:    "Processors the plugin process runs its Go code on (GOMAXPROCS): 1 unless its environment sets it.",
		Samples: []sample{{Labels: map[string]string{}, Value: float64(runtime.GOMAXPROCS(0))}}}
	out := []family{live, age, period, procs}
	for i := range out {
		sortSamples(out[i].Samples)
	}
	return out, nil
}

// writeText renders families in the Prometheus text exposition format 0.0.4.
func writeText(families []family) []byte {
	var sb strings.Builder
	for _, f := range families {
		fmt.Fprintf(&sb, "# HELP %s %s\n# TYPE %s %s\n", f.Name, escapeHelp(f.Help), f.Name, f.Type)
		for _, s := range f.Samples {
			sb.WriteString(f.Name + s.Suffix)
			sep := "{"
			for _, name := range labelOrder {
				if v, ok := s.Labels[name]; ok {
					sb.WriteString(sep + name + `="` + escapeLabel(v) + `"`)
					sep = ","
				}
			}
			if sep == "," {
				sb.WriteString("}")
			}
			sb.WriteString(" " + strconv.FormatFloat(s.Value, 'g', -1, 64) + "\n")
		}
	}
	return []byte(sb.String())
}

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// fieldFormat selects the rendering of metrics.
const fieldFormat = "format"

// prometheusContentType is the text exposition format's media type.
const prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

func (b *backend) pathMetrics() []*framework.Path {
	return []*framework.Path{{
		Pattern:      "metrics",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "metrics"},
		Fields: map[string]*framework.FieldSchema{
			fieldFormat: {Type: framework.TypeString, Query: true,
				Description: `"prometheus" answers in the Prometheus text exposition format; empty answers JSON.`},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: b.pathMetricsRead, Summary: "Read the engine's metrics."},
		},
		HelpSynopsis: "The engine's operation counters, upstream latency histogram, live credentials and root rotation ages.",
		HelpDescription: `Counters are this node's since the plugin started; gauges are read from
storage at each read. Read it with a policy granting read on <mount>/metrics;
?format=prometheus answers in the text format a Prometheus server scrapes.
See docs/metrics.md.`,
	}}
}

// pathMetricsRead answers the metrics; it writes nothing, so a performance
// standby answers it with its own counters.
func (b *backend) pathMetricsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	format := d.Get(fieldFormat).(string)
	if format != "" && format != "prometheus" {
		return logical.ErrorResponse("format must be prometheus, or empty for JSON, not %q", format), nil
	}
	gauges, err := b.gauges(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	families := append(b.metrics.snapshot(), gauges...)
	if format == "prometheus" {
		return &logical.Response{Data: map[string]any{
			logical.HTTPContentType: prometheusContentType,
			logical.HTTPRawBody:     writeText(families),
			logical.HTTPStatusCode:  http.StatusOK,
		}}, nil
	}
	return &logical.Response{Data: map[string]any{"metrics": families}}, nil
}
