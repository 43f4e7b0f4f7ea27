package config

import "github.com/hashicorp/hcl/v2"

// The file schema. Every attribute is optional to gohcl and a pointer, so
// "absent" (nil, zero range) is distinguishable from a zero value; required
// attributes are checked after decoding so the message can name the full
// path of the attribute. There is no ",remain" field anywhere: gohcl reports
// every unknown attribute or block as an error.

type fileSchema struct {
	DataDir         *string   `hcl:"data_dir,optional"`
	DataDirR        hcl.Range `hcl:"data_dir,attr_range"`
	ShutdownTimeout *string   `hcl:"shutdown_timeout,optional"`
	ShutdownR       hcl.Range `hcl:"shutdown_timeout,attr_range"`

	Log           *logBlock            `hcl:"log,block"`
	Socket        *socketBlock         `hcl:"socket,block"`
	API           *apiBlock            `hcl:"api,block"`
	Auth          *authBlock           `hcl:"auth,block"`
	Store         *storeBlock          `hcl:"store,block"`
	NATS          *natsBlock           `hcl:"nats,block"`
	Apps          []*appBlock          `hcl:"app,block"`
	Notifications []*notificationBlock `hcl:"notification,block"`
	Plugins       *pluginsBlock        `hcl:"plugins,block"`
	Retry         *retryBlock          `hcl:"retry,block"`
	Queue         *queueBlock          `hcl:"queue,block"`
	Retention     *retentionBlock      `hcl:"retention,block"`
	Metrics       *metricsBlock        `hcl:"metrics,block"`
	Audit         *auditBlock          `hcl:"audit,block"`
}

type logBlock struct {
	Level   *string   `hcl:"level,optional"`
	LevelR  hcl.Range `hcl:"level,attr_range"`
	Format  *string   `hcl:"format,optional"`
	FormatR hcl.Range `hcl:"format,attr_range"`
}

type socketBlock struct {
	Path         *string   `hcl:"path,optional"`
	PathR        hcl.Range `hcl:"path,attr_range"`
	Mode         *string   `hcl:"mode,optional"`
	ModeR        hcl.Range `hcl:"mode,attr_range"`
	MaxInflight  *string   `hcl:"max_inflight_bytes,optional"`
	MaxInflightR hcl.Range `hcl:"max_inflight_bytes,attr_range"`
}

type apiBlock struct {
	Address  *string   `hcl:"address,optional"`
	AddressR hcl.Range `hcl:"address,attr_range"`
	TLS      *tlsBlock `hcl:"tls,block"`
	Def      hcl.Range `hcl:",def_range"`
}

type tlsBlock struct {
	CertFile  *string   `hcl:"cert_file,optional"`
	CertFileR hcl.Range `hcl:"cert_file,attr_range"`
	KeyFile   *string   `hcl:"key_file,optional"`
	KeyFileR  hcl.Range `hcl:"key_file,attr_range"`
	Def       hcl.Range `hcl:",def_range"`
}

type authBlock struct {
	Issuer       *string   `hcl:"issuer,optional"`
	IssuerR      hcl.Range `hcl:"issuer,attr_range"`
	Audience     *string   `hcl:"audience,optional"`
	AudienceR    hcl.Range `hcl:"audience,attr_range"`
	HS256Secret  *string   `hcl:"hs256_secret_file,optional"`
	HS256R       hcl.Range `hcl:"hs256_secret_file,attr_range"`
	PublicKey    *string   `hcl:"public_key_file,optional"`
	PublicKeyR   hcl.Range `hcl:"public_key_file,attr_range"`
	MaxLifetime  *string   `hcl:"max_token_lifetime,optional"`
	MaxLifetimeR hcl.Range `hcl:"max_token_lifetime,attr_range"`
	JWKSURL      *string   `hcl:"jwks_url,optional"`
	JWKSURLR     hcl.Range `hcl:"jwks_url,attr_range"`
	JWKSRefresh  *string   `hcl:"jwks_refresh,optional"`
	JWKSRefreshR hcl.Range `hcl:"jwks_refresh,attr_range"`
	Def          hcl.Range `hcl:",def_range"`
}

type storeBlock struct {
	Kind       string    `hcl:"kind,label"`
	KindR      hcl.Range `hcl:"kind,label_range"`
	Path       *string   `hcl:"path,optional"`
	PathR      hcl.Range `hcl:"path,attr_range"`
	URL        *string   `hcl:"url,optional"`
	URLR       hcl.Range `hcl:"url,attr_range"`
	Replicas   *int      `hcl:"replicas,optional"`
	ReplicasR  hcl.Range `hcl:"replicas,attr_range"`
	Retention  *string   `hcl:"retention,optional"`
	RetentionR hcl.Range `hcl:"retention,attr_range"`
	// jetstream, connecting to an existing NATS cluster
	CredentialsFile  *string   `hcl:"credentials_file,optional"`
	CredentialsFileR hcl.Range `hcl:"credentials_file,attr_range"`
	CAFile           *string   `hcl:"ca_file,optional"`
	CAFileR          hcl.Range `hcl:"ca_file,attr_range"`
	CertFile         *string   `hcl:"cert_file,optional"`
	CertFileR        hcl.Range `hcl:"cert_file,attr_range"`
	KeyFile          *string   `hcl:"key_file,optional"`
	KeyFileR         hcl.Range `hcl:"key_file,attr_range"`
	Def              hcl.Range `hcl:",def_range"`
}

type natsBlock struct {
	Name          *string           `hcl:"name,optional"`
	NameR         hcl.Range         `hcl:"name,attr_range"`
	Listen        *string           `hcl:"listen,optional"`
	ListenR       hcl.Range         `hcl:"listen,attr_range"`
	StoreDir      *string           `hcl:"store_dir,optional"`
	StoreDirR     hcl.Range         `hcl:"store_dir,attr_range"`
	SyncInterval  *string           `hcl:"sync_interval,optional"`
	SyncIntervalR hcl.Range         `hcl:"sync_interval,attr_range"`
	Cluster       *natsClusterBlock `hcl:"cluster,block"`
	Def           hcl.Range         `hcl:",def_range"`
}

type natsClusterBlock struct {
	Name    *string   `hcl:"name,optional"`
	NameR   hcl.Range `hcl:"name,attr_range"`
	Listen  *string   `hcl:"listen,optional"`
	ListenR hcl.Range `hcl:"listen,attr_range"`
	Routes  *[]string `hcl:"routes,optional"`
	RoutesR hcl.Range `hcl:"routes,attr_range"`
	Def     hcl.Range `hcl:",def_range"`
}

type appBlock struct {
	Name  string     `hcl:"name,label"`
	NameR hcl.Range  `hcl:"name,label_range"`
	APNS  *apnsBlock `hcl:"apns,block"`
	FCM   *fcmBlock  `hcl:"fcm,block"`
	Def   hcl.Range  `hcl:",def_range"`
}

type apnsBlock struct {
	Topic         *string   `hcl:"topic,optional"`
	TopicR        hcl.Range `hcl:"topic,attr_range"`
	KeyFile       *string   `hcl:"key_file,optional"`
	KeyFileR      hcl.Range `hcl:"key_file,attr_range"`
	KeyID         *string   `hcl:"key_id,optional"`
	KeyIDR        hcl.Range `hcl:"key_id,attr_range"`
	TeamID        *string   `hcl:"team_id,optional"`
	TeamIDR       hcl.Range `hcl:"team_id,attr_range"`
	CertFile      *string   `hcl:"cert_file,optional"`
	CertFileR     hcl.Range `hcl:"cert_file,attr_range"`
	CertPassword  *string   `hcl:"cert_password,optional"`
	CertPasswordR hcl.Range `hcl:"cert_password,attr_range"`
	Endpoint      *string   `hcl:"endpoint,optional"`
	EndpointR     hcl.Range `hcl:"endpoint,attr_range"`
	CAFile        *string   `hcl:"ca_file,optional"`
	CAFileR       hcl.Range `hcl:"ca_file,attr_range"`
	Connections   *int      `hcl:"connections,optional"`
	ConnectionsR  hcl.Range `hcl:"connections,attr_range"`
	Def           hcl.Range `hcl:",def_range"`
}

type fcmBlock struct {
	ProjectID    *string   `hcl:"project_id,optional"`
	ProjectIDR   hcl.Range `hcl:"project_id,attr_range"`
	Credentials  *string   `hcl:"credentials_file,optional"`
	CredentialsR hcl.Range `hcl:"credentials_file,attr_range"`
	Endpoint     *string   `hcl:"endpoint,optional"`
	EndpointR    hcl.Range `hcl:"endpoint,attr_range"`
	CAFile       *string   `hcl:"ca_file,optional"`
	CAFileR      hcl.Range `hcl:"ca_file,attr_range"`
	Def          hcl.Range `hcl:",def_range"`
}

type notificationBlock struct {
	Type      string    `hcl:"type,label"`
	TypeR     hcl.Range `hcl:"type,label_range"`
	Default   *string   `hcl:"default,optional"`
	DefaultR  hcl.Range `hcl:"default,attr_range"`
	TTL       *string   `hcl:"ttl,optional"`
	TTLR      hcl.Range `hcl:"ttl,attr_range"`
	Priority  *string   `hcl:"priority,optional"`
	PriorityR hcl.Range `hcl:"priority,attr_range"`
	Category  *string   `hcl:"category,optional"`
	CategoryR hcl.Range `hcl:"category,attr_range"`
	Actions   *[]string `hcl:"actions,optional"`
	ActionsR  hcl.Range `hcl:"actions,attr_range"`
	// Seal is true, false or "required": an expression, decoded by the
	// builder, because HCL has no union type.
	Seal  hcl.Expression `hcl:"seal,optional"`
	SealR hcl.Range      `hcl:"seal,attr_range"`
	Def   hcl.Range      `hcl:",def_range"`
}

type pluginsBlock struct {
	Dir          *string   `hcl:"dir,optional"`
	DirR         hcl.Range `hcl:"dir,attr_range"`
	Timeout      *string   `hcl:"timeout,optional"`
	TimeoutR     hcl.Range `hcl:"timeout,attr_range"`
	MemoryLimit  *string   `hcl:"memory_limit,optional"`
	MemoryLimitR hcl.Range `hcl:"memory_limit,attr_range"`
	OnError      *string   `hcl:"on_error,optional"`
	OnErrorR     hcl.Range `hcl:"on_error,attr_range"`
}

type retryBlock struct {
	Initial  *string   `hcl:"initial,optional"`
	InitialR hcl.Range `hcl:"initial,attr_range"`
	Max      *string   `hcl:"max,optional"`
	MaxR     hcl.Range `hcl:"max,attr_range"`
	Jitter   *float64  `hcl:"jitter,optional"`
	JitterR  hcl.Range `hcl:"jitter,attr_range"`
}

type queueBlock struct {
	MaxOpenJobs  *int      `hcl:"max_open_jobs,optional"`
	MaxOpenJobsR hcl.Range `hcl:"max_open_jobs,attr_range"`
	InMemory     *int      `hcl:"in_memory,optional"`
	InMemoryR    hcl.Range `hcl:"in_memory,attr_range"`
	Lease        *string   `hcl:"lease,optional"`
	LeaseR       hcl.Range `hcl:"lease,attr_range"`
}

type retentionBlock struct {
	Answers          *string   `hcl:"answers,optional"`
	AnswersR         hcl.Range `hcl:"answers,attr_range"`
	DeadLetters      *string   `hcl:"dead_letters,optional"`
	DeadLettersR     hcl.Range `hcl:"dead_letters,attr_range"`
	InactiveDevices  *string   `hcl:"inactive_devices,optional"`
	InactiveDevicesR hcl.Range `hcl:"inactive_devices,attr_range"`
}

type metricsBlock struct {
	Address      *string   `hcl:"address,optional"`
	AddressR     hcl.Range `hcl:"address,attr_range"`
	AllowRemote  *bool     `hcl:"allow_remote,optional"`
	AllowRemoteR hcl.Range `hcl:"allow_remote,attr_range"`
	Pprof        *bool     `hcl:"pprof,optional"`
	PprofR       hcl.Range `hcl:"pprof,attr_range"`
}

type auditBlock struct {
	Retention  *string   `hcl:"retention,optional"`
	RetentionR hcl.Range `hcl:"retention,attr_range"`
}
