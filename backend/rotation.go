package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/automatedrotationutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/rotation"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Scheduled root rotation. On Vault Enterprise the rotation manager runs the
// schedule and calls RotateCredential. Vault Community and OpenBao have no
// rotation manager (registration answers ErrRotationManagerUnsupported, or
// gRPC Unimplemented on OpenBao), so the plugin keeps the schedule in the
// connection and its periodic function, which runs on the active node only,
// rotates what is due.

// minRotationPeriod is the shortest rotation_period accepted.
const minRotationPeriod = time.Minute

// maxRotationBackoff bounds the wait after failed scheduled rotations.
const maxRotationBackoff = time.Hour

// rotationSchedule is a connection's schedule state, kept in its entry.
type rotationSchedule struct {
	automatedrotationutil.AutomatedRotationParams
	// SelfScheduled is set when Vault has no rotation manager and the
	// plugin's periodic function runs the schedule.
	SelfScheduled bool `json:"self_scheduled,omitempty"`
	// NextRotation is when the plugin rotates next (self-scheduled only).
	NextRotation time.Time `json:"next_rotation,omitempty"`
	// Failures counts scheduled rotations that failed in a row.
	Failures int `json:"rotation_failures,omitempty"`
	// LastError is the last failure's message (never a secret).
	LastError string `json:"last_rotation_error,omitempty"`
}

// active reports whether a schedule is set and enabled.
func (r *rotationSchedule) active() bool {
	return r.HasNonzeroRotationValues() && !r.DisableAutomatedRotation
}

// parseRotationFields applies the request's rotation fields to entry.
func parseRotationFields(entry *connectionEntry, p provider.Provider, d *framework.FieldData) error {
	if err := entry.Rotation.ParseAutomatedRotationFields(d); err != nil {
		return requestError(err.Error())
	}
	// Writing either field alone replaces the whole stored schedule, so its
	// zero value (rotation_period=0, rotation_schedule="") switches scheduled
	// rotation off whichever kind is stored; the SDK only refuses both
	// nonzero in one request.
	_, periodGiven := d.GetOk("rotation_period")
	_, scheduleGiven := d.GetOk("rotation_schedule")
	if periodGiven && !scheduleGiven {
		entry.Rotation.RotationSchedule = ""
	}
	if scheduleGiven && !periodGiven {
		entry.Rotation.RotationPeriod = 0
	}
	// A window belongs to a cron schedule and means nothing without one.
	if entry.Rotation.RotationSchedule == "" {
		entry.Rotation.RotationWindow = 0
	}
	if period := entry.Rotation.RotationPeriod; period != 0 && period < minRotationPeriod {
		return requestError(fmt.Sprintf("rotation_period must be %s or more (or 0 to switch scheduled rotation off)", minRotationPeriod))
	}
	if entry.Rotation.RotationPeriod < 0 || entry.Rotation.RotationWindow < 0 {
		return requestError("rotation_period and rotation_window must not be negative")
	}
	if entry.Rotation.active() && !rotatesRoot(p) {
		return requestError(fmt.Sprintf("provider %s cannot rotate its root credential through its API, so it takes no rotation_period or rotation_schedule; rotate it in the provider's console, then write the connection", p.Name()))
	}
	return nil
}

// rotatesRoot reports whether a provider's API can rotate its root.
func rotatesRoot(p provider.Provider) bool {
	capable, ok := p.(provider.RootRotationCapable)
	return ok && capable.RotatesRoot()
}

// scheduleRotation registers or deregisters the connection's rotation job,
// before the entry is stored (the order Vault's own engines follow). It
// returns the rotation manager operation performed, "" when none.
func (b *backend) scheduleRotation(ctx context.Context, req *logical.Request, entry, existing *connectionEntry) (string, error) {
	sched := &entry.Rotation
	if !sched.active() {
		sched.SelfScheduled, sched.NextRotation = false, time.Time{}
		if existing == nil || !existing.Rotation.active() || existing.Rotation.SelfScheduled {
			return "", nil
		}
		if err := b.deregisterRotation(ctx, req); err != nil {
			return "", err
		}
		return "deregistration", nil
	}
	_, err := b.System().RegisterRotationJob(ctx, &rotation.RotationJobConfigureRequest{
		Name:             "apikeys-root-credential",
		MountPoint:       req.MountPoint,
		ReqPath:          req.Path,
		RotationSchedule: sched.RotationSchedule,
		RotationWindow:   sched.RotationWindow,
		RotationPeriod:   sched.RotationPeriod,
		RotationPolicy:   sched.RotationPolicy,
	})
	switch {
	case err == nil:
		sched.SelfScheduled, sched.NextRotation = false, time.Time{}
		return "registration", nil
	case managerUnsupported(err):
		if existing != nil && existing.Rotation.SelfScheduled && sameSchedule(&existing.Rotation, sched) {
			// Writing other fields must not postpone the next rotation.
			sched.SelfScheduled, sched.NextRotation = true, existing.Rotation.NextRotation
			return "", nil
		}
		sched.SelfScheduled = true
		next, err := nextRotation(sched, b.now())
		if err != nil {
			return "", requestError(err.Error())
		}
		sched.NextRotation = next
		return "", nil
	}
	return "", fmt.Errorf("register the root rotation job: %w", err)
}

// deregisterRotation removes the connection's job from Vault's rotation
// manager. Where there is none (Vault Community, OpenBao) the schedule lives
// in the entry only and there is nothing to remove.
func (b *backend) deregisterRotation(ctx context.Context, req *logical.Request) error {
	err := b.System().DeregisterRotationJob(ctx, &rotation.RotationJobDeregisterRequest{MountPoint: req.MountPoint, ReqPath: req.Path})
	if err != nil && !managerUnsupported(err) {
		return fmt.Errorf("deregister the root rotation job: %w", err)
	}
	return nil
}

func sameSchedule(a, b *rotationSchedule) bool {
	return a.RotationPeriod == b.RotationPeriod && a.RotationSchedule == b.RotationSchedule &&
		a.RotationWindow == b.RotationWindow && a.active() == b.active()
}

// managerUnsupported recognizes a Vault without a usable rotation manager:
// Community answers ErrRotationManagerUnsupported (over the plugin's gRPC
// channel only its text survives), while OpenBao and a Vault older than this
// SDK do not know the rotation calls at all (gRPC Unimplemented). Either way
// the plugin keeps the schedule itself.
func managerUnsupported(err error) bool {
	return errors.Is(err, automatedrotationutil.ErrRotationManagerUnsupported) ||
		strings.Contains(err.Error(), automatedrotationutil.ErrRotationManagerUnsupported.Error()) ||
		status.Code(err) == codes.Unimplemented
}

// nextRotation is the first scheduled time after from.
func nextRotation(sched *rotationSchedule, from time.Time) (time.Time, error) {
	if sched.RotationSchedule == "" {
		return from.Add(sched.RotationPeriod), nil
	}
	cron, err := rotation.DefaultScheduler.Parse(sched.RotationSchedule)
	if err != nil {
		return time.Time{}, fmt.Errorf("rotation_schedule: %w", err)
	}
	return cron.Next(from), nil
}

// rotationBackoff is the wait after the n-th failure in a row: 1m, 2m, 4m…,
// never more than the period or an hour.
func rotationBackoff(sched *rotationSchedule, failures int) time.Duration {
	wait := doublingBackoff(failures)
	if sched.RotationPeriod > 0 {
		wait = min(wait, sched.RotationPeriod)
	}
	return wait
}

// rotateCredential is the rotation manager's callback (Enterprise): the job
// was registered with req.Path = config/<name>.
func (b *backend) rotateCredential(ctx context.Context, req *logical.Request) error {
	name, ok := strings.CutPrefix(req.Path, configStoragePrefix)
	if !ok || name == "" {
		return fmt.Errorf("rotation request for unexpected path %q", req.Path)
	}
	return b.rotateRoot(ctx, req.Storage, name)
}

// maintainRoots is the periodic pass over every connection: it resolves
// rotations interrupted mid-way and runs the self-kept schedules.
func (b *backend) maintainRoots(ctx context.Context, s logical.Storage) error {
	names, err := s.List(ctx, configStoragePrefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		err := b.withinItemBudget(ctx, fmt.Sprintf("connection %q", name), func(ctx context.Context) error {
			return b.maintainRoot(ctx, s, name)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("connection %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (b *backend) maintainRoot(ctx context.Context, s logical.Storage, name string) error {
	defer b.lockConnection(name)()
	entry, err := getConnection(ctx, s, name)
	if err != nil || entry == nil {
		return err
	}
	now := b.now()
	if entry.PendingRoot != nil {
		if !b.recoveries.due(name, now) {
			return nil
		}
		if err := b.recoverPendingRootLocked(ctx, s, name, entry); err != nil {
			wait := b.recoveries.failed(name, now)
			return fmt.Errorf("%w; trying again in %s", err, wait)
		}
		b.recoveries.succeeded(name)
	}
	sched := &entry.Rotation
	if !sched.SelfScheduled || !sched.active() || now.Before(sched.NextRotation) {
		return nil
	}
	if sched.RotationWindow > 0 && sched.Failures == 0 && now.After(sched.NextRotation.Add(sched.RotationWindow)) {
		b.Logger().Warn("missed the rotation window; waiting for the next scheduled time", "connection", name, "scheduled", sched.NextRotation)
		if sched.NextRotation, err = nextRotation(sched, now); err != nil {
			return err
		}
		return b.storeScheduleState(ctx, s, name, entry)
	}
	if err := b.rotateRootLocked(ctx, s, name); err != nil {
		b.Logger().Error("scheduled root rotation failed", "connection", name, "error", err)
		return b.recordRotationFailure(ctx, s, name, now, err)
	}
	return nil
}

// recordRotationFailure keeps the failure visible on config read and backs
// the next attempt off.
func (b *backend) recordRotationFailure(ctx context.Context, s logical.Storage, name string, now time.Time, rotateErr error) error {
	entry, err := getConnection(ctx, s, name)
	if err != nil || entry == nil {
		return errors.Join(rotateErr, err)
	}
	sched := &entry.Rotation
	sched.Failures++
	sched.LastError = rotateErr.Error()
	sched.NextRotation = now.Add(rotationBackoff(sched, sched.Failures))
	return errors.Join(rotateErr, b.storeScheduleState(ctx, s, name, entry))
}

// storeScheduleState stores an entry whose schedule changed; the live
// session stays valid, so the cached connection moves to the new generation.
func (b *backend) storeScheduleState(ctx context.Context, s logical.Storage, name string, entry *connectionEntry) error {
	if err := putConnection(ctx, s, name, entry); err != nil {
		return err
	}
	b.conns.rekey(name, entry.Generation-1, entry.Generation)
	return nil
}

// scheduleAfterRotation resets a self-kept schedule after any rotation,
// manual or scheduled, so the period counts from the last change.
func (b *backend) scheduleAfterRotation(entry *connectionEntry, now time.Time) error {
	sched := &entry.Rotation
	sched.Failures, sched.LastError = 0, ""
	if !sched.SelfScheduled || !sched.active() {
		return nil
	}
	next, err := nextRotation(sched, now)
	sched.NextRotation = next
	return err
}

// rotationInfo adds the schedule and its state to a config read.
func (b *backend) rotationInfo(ctx context.Context, req *logical.Request, entry *connectionEntry, data map[string]any) {
	sched := &entry.Rotation
	sched.PopulateSetAutomatedRotationData(data)
	if !entry.LastRotation.IsZero() {
		data["last_vault_rotation"] = provider.Timestamp(entry.LastRotation)
	}
	switch {
	case !sched.active():
	case sched.SelfScheduled:
		data["next_vault_rotation"] = provider.Timestamp(sched.NextRotation)
	default:
		if info, err := b.System().GetRotationInformation(ctx, &rotation.RotationInfoRequest{ReqPath: req.Path}); err == nil {
			data["next_vault_rotation"] = provider.Timestamp(info.NextVaultRotation)
		}
	}
	if sched.LastError != "" {
		data["last_rotation_error"] = sched.LastError
		data["rotation_failures"] = sched.Failures
	}
}
