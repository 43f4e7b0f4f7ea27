package jetstream

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgerelay/edgerelay/relay/store"
)

var _ store.Backend = (*Store)(nil)

// Defaults for Options.
const (
	DefaultPrefix  = "relay"
	DefaultTimeout = 5 * time.Second
	// DefaultFetchAckWait is the consumers' AckWait: how long a fetched
	// job message stays with a relay before it has turned it into a lease
	// (or put it back). A relay that dies in that moment delays the job
	// by this much.
	DefaultFetchAckWait = 30 * time.Second
)

// Options configure a Store. Either Conn or URL is required.
type Options struct {
	// Conn is a connection the caller owns (for example natsd.Server.Conn,
	// in-process). When set, URL and the connection options are ignored
	// and Close leaves the connection open.
	Conn *nats.Conn

	// URL is one or more comma-separated server URLs (nats://, tls://).
	URL string
	// Name names the connection on the server (monitoring); relayd passes
	// its relay name.
	Name string
	// TLS: CAFile adds roots to trust for the servers' certificates;
	// CertFile and KeyFile present a client certificate (mutual TLS).
	CAFile, CertFile, KeyFile string
	// CredentialsFile is a NATS user credentials file (JWT and NKey seed,
	// decentralized auth).
	CredentialsFile string
	// NKeySeedFile is a file holding an NKey user seed.
	NKeySeedFile string
	// User and Password authenticate with a user name and password (or a
	// token: Password alone).
	User, Password string

	// Replicas is the replica count of every stream and bucket: 1, or 3
	// (a cluster of at least three servers). 0 means 1.
	Replicas int
	// Prefix names every stream, bucket and subject of this store
	// (letters, digits, - and _). Relays sharing a state use the same
	// prefix; tests use one each. Empty: DefaultPrefix.
	Prefix string
	// Timeout bounds each JetStream request whose context has no deadline
	// (0: DefaultTimeout).
	Timeout time.Duration
	// FetchAckWait is the consumers' AckWait (0: DefaultFetchAckWait).
	FetchAckWait time.Duration
	// Logger (nil: discarded).
	Logger hclog.Logger
}

// Store is store.Backend on NATS JetStream. See the package doc.
type Store struct {
	opts   Options
	log    hclog.Logger
	nc     *nats.Conn
	ownsNC bool
	js     jetstream.JetStream

	events jetstream.KeyValue // ev.*, ans.*, dl.*
	dir    jetstream.KeyValue // dev.*, tok.*, set.*, pref.*
	recent jetstream.KeyValue // user.recent counters, in memory
	// The buckets' streams, for consistent scans (scanBucket).
	eventsStr, dirStr jetstream.Stream
	jobs              jetstream.Stream // work queue of job messages
	answer            jetstream.Stream // the answer log
	accept            jetstream.Stream // undecided markers
	audit             jetstream.Stream // the audit log

	subj struct{ jobs, answers, accepted, audit string }

	mu        sync.Mutex
	consumers map[string]jetstream.Consumer // by consumer name
	bells     map[string]chan struct{}      // by lane: see doorbell
	// unanswered: since when a consumer (by name) has not answered a
	// fetch; see holdLower.
	unanswered map[string]time.Time
	bellSubs   []*nats.Subscription
	closed     bool
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Open connects (unless opts.Conn is given), creates the streams, buckets
// and their settings if missing, and returns the store. Relays may Open
// the same prefix concurrently. It retries while JetStream is not ready
// (a cluster still electing its leader) until ctx is done.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(opts.Prefix) {
		return nil, fmt.Errorf("open jetstream store: prefix %q: only letters, digits, - and _", opts.Prefix)
	}
	switch opts.Replicas {
	case 0:
		opts.Replicas = 1
	case 1, 3:
	default:
		return nil, fmt.Errorf("open jetstream store: replicas %d: want 1 or 3", opts.Replicas)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.FetchAckWait <= 0 {
		opts.FetchAckWait = DefaultFetchAckWait
	}
	s := &Store{opts: opts, log: opts.Logger, consumers: map[string]jetstream.Consumer{}, bells: map[string]chan struct{}{},
		unanswered: map[string]time.Time{}}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	s.subj.jobs = opts.Prefix + ".jobs"
	s.subj.answers = opts.Prefix + ".answers"
	s.subj.accepted = opts.Prefix + ".accepted"
	s.subj.audit = opts.Prefix + ".audit"

	if opts.Conn != nil {
		s.nc = opts.Conn
	} else {
		nc, err := dial(opts)
		if err != nil {
			return nil, err
		}
		s.nc, s.ownsNC = nc, true
	}
	js, err := jetstream.New(s.nc, jetstream.WithDefaultTimeout(opts.Timeout))
	if err != nil {
		s.closeConn()
		return nil, fmt.Errorf("open jetstream store: %w", err)
	}
	s.js = js
	for {
		err = s.setup(ctx)
		if err == nil {
			break
		}
		s.log.Warn("jetstream not ready, retrying", "error", err)
		select {
		case <-ctx.Done():
			s.closeConn()
			return nil, fmt.Errorf("open jetstream store %s: %w", opts.Prefix, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	return s, nil
}

// dial connects with the options' URL, TLS and credentials.
func dial(o Options) (*nats.Conn, error) {
	if o.URL == "" {
		return nil, errors.New("open jetstream store: url is required without a connection")
	}
	name := o.Name
	if name == "" {
		name = "relayd"
	}
	nopts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
	if o.CAFile != "" {
		nopts = append(nopts, nats.RootCAs(o.CAFile))
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("open jetstream store: cert_file and key_file go together")
	}
	if o.CertFile != "" {
		nopts = append(nopts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	auth := 0
	if o.CredentialsFile != "" {
		auth++
		nopts = append(nopts, nats.UserCredentials(o.CredentialsFile))
	}
	if o.NKeySeedFile != "" {
		auth++
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("open jetstream store: nkey seed %s: %w", o.NKeySeedFile, err)
		}
		nopts = append(nopts, opt)
	}
	switch {
	case o.User != "":
		auth++
		nopts = append(nopts, nats.UserInfo(o.User, o.Password))
	case o.Password != "":
		auth++
		nopts = append(nopts, nats.Token(o.Password))
	}
	if auth > 1 {
		return nil, errors.New("open jetstream store: choose one of credentials file, nkey seed file, user/password")
	}
	nc, err := nats.Connect(o.URL, nopts...)
	if err != nil {
		return nil, fmt.Errorf("open jetstream store: connect %s: %w", o.URL, err)
	}
	return nc, nil
}

// setup creates or binds every stream and bucket.
func (s *Store) setup(ctx context.Context) error {
	p, r := s.opts.Prefix, s.opts.Replicas
	var err error
	if s.events, s.eventsStr, err = s.bucket(ctx, p+"_events", "edgerelay events, answered marks, dead letters"); err != nil {
		return err
	}
	if s.dir, s.dirStr, err = s.bucket(ctx, p+"_dir", "edgerelay devices, settings, preferences"); err != nil {
		return err
	}
	if s.recent, err = s.recentBucket(ctx, p+"_recent"); err != nil {
		return err
	}
	streams := []struct {
		dst *jetstream.Stream
		cfg jetstream.StreamConfig
	}{
		{&s.jobs, jetstream.StreamConfig{Name: p + "_jobs", Subjects: []string{s.subj.jobs + ".>"},
			Description: "edgerelay job schedule: one message per open job, by lane and priority",
			Retention:   jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Replicas: r, AllowDirect: directGet(r)}},
		{&s.answer, jetstream.StreamConfig{Name: p + "_answers", Subjects: []string{s.subj.answers + ".>"},
			Description: "edgerelay answer log: the sequence is the actions stream's id",
			Retention:   jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Replicas: r, AllowDirect: directGet(r)}},
		{&s.accept, jetstream.StreamConfig{Name: p + "_accepted", Subjects: []string{s.subj.accepted},
			Description: "edgerelay undecided index: accepted event keys, deleted once decided",
			Retention:   jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Replicas: r, AllowDirect: directGet(r)}},
		{&s.audit, jetstream.StreamConfig{Name: p + "_audit", Subjects: []string{s.subj.audit},
			Description: "edgerelay audit log: changes by operators and admins, append-only",
			Retention:   jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Replicas: r, AllowDirect: directGet(r)}},
	}
	for _, st := range streams {
		str, err := s.js.CreateOrUpdateStream(ctx, st.cfg)
		if err != nil {
			return fmt.Errorf("create stream %s: %w", st.cfg.Name, err)
		}
		*st.dst = str
	}
	return nil
}

// directGet is a stream's AllowDirect for its replica count. Reads must
// see every acknowledged write, whichever server a relay talks to. With
// replicas a direct get may be answered by a replica that lags, so it is
// off there and a get goes to the stream leader through the JetStream API.
// A stream of one replica has only the server that acknowledged the write
// to answer it, and a direct get skips the API's JSON request and reply
// (allocations per delivery of a single-node relayd: 190 → 107–112 KB).
func directGet(replicas int) bool { return replicas <= 1 }

// setDirectGet makes str's AllowDirect directGet of its replicas, and
// returns the stream as updated.
func (s *Store) setDirectGet(ctx context.Context, str jetstream.Stream, name string) (jetstream.Stream, error) {
	cfg := str.CachedInfo().Config
	want := directGet(cfg.Replicas)
	if cfg.AllowDirect == want {
		return str, nil
	}
	if !want {
		// Made by something else (an older version, a tool): relays that
		// bound it before this update must be restarted.
		s.log.Warn("bucket had direct get on; turning it off (restart relays started before this one)", "bucket", name)
	}
	cfg.AllowDirect = want
	str, err := s.js.UpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: set direct get %t: %w", name, want, err)
	}
	return str, nil
}

// bucket binds a KV bucket, creating it if missing, with direct get as
// directGet says (the configuration nats.go's CreateKeyValue makes, but
// AllowDirect): no relay binds a replicated bucket that has direct get
// on.
func (s *Store) bucket(ctx context.Context, name, desc string) (jetstream.KeyValue, jetstream.Stream, error) {
	str, err := s.js.Stream(ctx, "KV_"+name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		str, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
			Name: "KV_" + name, Description: desc, Subjects: []string{"$KV." + name + ".>"},
			MaxMsgsPerSubject: 1, MaxBytes: -1, MaxMsgSize: -1, MaxMsgs: -1, MaxConsumers: -1,
			Storage: jetstream.FileStorage, Replicas: s.opts.Replicas, AllowRollup: true, DenyDelete: true,
			Duplicates: 2 * time.Minute, AllowDirect: directGet(s.opts.Replicas), Discard: jetstream.DiscardNew,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			str, err = s.js.Stream(ctx, "KV_"+name)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	if str, err = s.setDirectGet(ctx, str, name); err != nil {
		return nil, nil, err
	}
	kv, err := s.js.KeyValue(ctx, name)
	if err != nil {
		return nil, nil, fmt.Errorf("bind bucket %s: %w", name, err)
	}
	return kv, str, nil
}

// recentBucket binds or creates the bucket of user.recent counters: in
// memory (no fsync on the path of every event; counts are lost only when
// every replica restarts), a key idle for an hour expires. Like the other
// buckets, direct get is on only without replicas: a decision must see the
// count its own event just added, whichever server the read reaches.
func (s *Store) recentBucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	str, err := s.js.Stream(ctx, "KV_"+name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		str, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
			Name: "KV_" + name, Description: "edgerelay user.recent counters", Subjects: []string{"$KV." + name + ".>"},
			MaxMsgsPerSubject: 1, MaxBytes: -1, MaxMsgSize: -1, MaxMsgs: -1, MaxConsumers: -1, MaxAge: time.Hour,
			Storage: jetstream.MemoryStorage, Replicas: s.opts.Replicas, AllowRollup: true, DenyDelete: true,
			Duplicates: 2 * time.Minute, AllowDirect: directGet(s.opts.Replicas), Discard: jetstream.DiscardNew,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			str, err = s.js.Stream(ctx, "KV_"+name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	if _, err := s.setDirectGet(ctx, str, name); err != nil {
		return nil, err
	}
	kv, err := s.js.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("bind bucket %s: %w", name, err)
	}
	return kv, nil
}

// Ping reports whether the store can serve writes: JetStream answers and
// the event bucket's stream has a leader.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed() {
		return fmt.Errorf("ping jetstream: %w", errClosed)
	}
	if st := s.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("ping jetstream: connection %v", st)
	}
	str, err := s.js.Stream(ctx, "KV_"+s.opts.Prefix+"_events")
	if err != nil {
		return fmt.Errorf("ping jetstream: %w", err)
	}
	if ci := str.CachedInfo().Cluster; ci != nil && ci.Leader == "" {
		return errors.New("ping jetstream: event bucket has no leader")
	}
	return nil
}

// Close ends the store's use of the connection: it flushes what was sent
// and closes the connection when Open dialed it. It never fails, even for
// a done ctx.
func (s *Store) Close(context.Context) error {
	s.mu.Lock()
	s.closed = true
	subs := s.bellSubs
	s.bellSubs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		_ = sub.Unsubscribe()
	}
	// Settle's delays of job messages are sent without waiting: let them
	// reach the server (a lost one only delays a retry to the lease's end).
	if s.nc.IsConnected() {
		_ = s.nc.FlushTimeout(time.Second)
	}
	s.closeConn()
	return nil
}

func (s *Store) closeConn() {
	if s.ownsNC && !s.nc.IsClosed() {
		s.nc.Close()
	}
}

var errClosed = errors.New("store closed")

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ---- keys ----

// tok encodes any string as one subject/key token: base64url, no padding
// ("=" never appears), so ".", "*", ">" and spaces in ids are harmless.
// The empty string becomes "_" (not a base64url output of length 1).
func tok(s string) string {
	if s == "" {
		return "_"
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func untok(t string) (string, error) {
	if t == "_" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(t)
	return string(b), err
}

func eventKey(ws, id string) string  { return "ev." + tok(ws) + "." + tok(id) }
func answerKey(ws, id string) string { return "ans." + tok(ws) + "." + tok(id) }
func deadKey(id string) string       { return "dl." + id }
func deviceKey(ws, user, id string) string {
	return "dev." + tok(ws) + "." + tok(user) + "." + tok(id)
}
func tokenKey(ws, token string) string {
	h := sha256.Sum256([]byte(token))
	return "tok." + tok(ws) + "." + hex.EncodeToString(h[:16])
}
func moveKey(ws, user, id string) string {
	return "mov." + tok(ws) + "." + tok(user) + "." + tok(id)
}
func proofKey(ws, user string) string { return "prf." + tok(ws) + "." + tok(user) }
func settingsKey(ws string) string    { return "set." + tok(ws) }
func prefsKey(ws, user string) string { return "pref." + tok(ws) + "." + tok(user) }
func laneToken(lane string) string    { return tok(lane) }
func (s *Store) jobSubject(lane, prio string) string {
	return s.subj.jobs + "." + laneToken(lane) + "." + prio
}

// ---- KV helpers ----

// unavailableWait bounds how long a read waits for a stream to have a
// leader again (an election in a cluster, a consumer just created).
const unavailableWait = 5 * time.Second

// retryUnavailable retries fn while no server answers for the stream
// (nats.ErrNoResponders: no leader at the moment), up to unavailableWait.
func retryUnavailable[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	deadline := time.Now().Add(unavailableWait)
	for {
		v, err := fn()
		if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(deadline) {
			return v, err
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return v, err
		}
	}
}

// nextMsg reads the first message at or after seq on subject, from the
// stream leader.
func nextMsg(ctx context.Context, str jetstream.Stream, seq uint64, subject string) (*jetstream.RawStreamMsg, error) {
	return retryUnavailable(ctx, func() (*jetstream.RawStreamMsg, error) {
		return str.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
	})
}

// isWrongLast reports a compare-and-set conflict: the key exists (create)
// or changed since it was read (update, delete), on one server (10071) or
// a replicated stream (10164).
func isWrongLast(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// msgGone reports whether a delete's error says the message is not there:
// deleted by another relay first, or never there. The server answers a
// delete of a deleted message with "message deletion unsuccessful"
// (10057) and the store's "no message found", not with
// jetstream.ErrMsgNotFound (10037, what reads return); nats.go keeps only
// that answer's text (jetstream.ErrMsgDeleteUnsuccessful: "…: nats: API
// error: code=500 err_code=10057 description=no message found"), so the
// text is all there is to match.
func msgGone(err error) bool {
	if err == nil || errors.Is(err, jetstream.ErrMsgNotFound) {
		return true
	}
	return errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) &&
		strings.Contains(err.Error(), "err_code=10057") && strings.HasSuffix(err.Error(), "no message found")
}

func isNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// getJSON reads key into v; it returns the revision, 0 when absent.
func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	e, err := retryUnavailable(ctx, func() (jetstream.KeyValueEntry, error) { return kv.Get(ctx, key) })
	if isNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return e.Revision(), nil
}

// putJSON writes v at key if the key is still at rev (0: absent). A
// conflict is reported by isWrongLast(err).
func putJSON(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64, v any) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", key, err)
	}
	if rev == 0 {
		return kv.Create(ctx, key, b)
	}
	return kv.Update(ctx, key, b, rev)
}

// maxCAS bounds read-modify-write retries on one key.
const maxCAS = 100

var errTooManyConflicts = errors.New("too many concurrent writers")

// scanBucket calls fn with each live key under filter (KV key syntax) and
// its value, in stream order. Unlike a key listing, which reads through a
// consumer that may sit on a replica behind the leader, it reads each
// message from the stream leader (one request per key): it sees every
// acknowledged write. For small sets (a user's devices, dead letters).
func scanBucket(ctx context.Context, str jetstream.Stream, filter string, fn func(key string, val []byte) error) error {
	pre := "$KV." + strings.TrimPrefix(str.CachedInfo().Config.Name, "KV_") + "."
	for seq := uint64(1); ; seq++ {
		msg, err := nextMsg(ctx, str, seq, pre+filter)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("scan %s: %w", filter, err)
		}
		seq = msg.Sequence
		if op := msg.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			continue
		}
		if err := fn(strings.TrimPrefix(msg.Subject, pre), msg.Data); err != nil {
			return err
		}
	}
}

// listKeys lists the keys under a filter (nil when none).
func listKeys(ctx context.Context, kv jetstream.KeyValue, filter string) ([]string, error) {
	l, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("list %s: %w", filter, err)
	}
	defer l.Stop()
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// backoff sleeps a little before a CAS retry, so that writers racing on
// one key spread out.
func backoff(ctx context.Context, attempt int) error {
	return sleep(ctx, time.Duration(attempt%8+1)*time.Millisecond)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
