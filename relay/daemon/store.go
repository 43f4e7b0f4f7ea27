package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/natsd"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
	"github.com/edgerelay/edgerelay/relay/store/jetstream"
)

// openStore opens the configured backend and returns it with the function
// that closes it (and, for store "jetstream" with a nats {} block, stops
// the embedded NATS server after the store).
func (d *Daemon) openStore(ctx context.Context) (store.Backend, func(context.Context) error, error) {
	cfg := d.cfg
	switch cfg.Store.Kind {
	case config.StoreBolt:
		// config.Load fills the bolt path (<data_dir>/relay.db by default).
		st, err := bolt.Open(cfg.Store.Path, bolt.Options{Logger: d.log.Named("store"), WriteFault: d.storeFault})
		if err != nil {
			return nil, nil, err
		}
		return st, func(ctx context.Context) error {
			if err := st.Close(ctx); err != nil {
				return fmt.Errorf("close store: %w", err)
			}
			return nil
		}, nil
	case config.StoreJetStream:
		return d.openJetStream(ctx)
	}
	return nil, nil, fmt.Errorf("open store: backend %q is not available in this build", cfg.Store.Kind)
}

// openJetStream starts the embedded NATS server (with a nats {} block),
// waits for JetStream (a cluster needs a quorum of its relays), and opens
// the store on it or on store.url.
func (d *Daemon) openJetStream(ctx context.Context) (store.Backend, func(context.Context) error, error) {
	cfg := d.cfg
	var srv *natsd.Server
	var closers []func(context.Context) error
	closeAll := func(ctx context.Context) error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i](ctx))
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (store.Backend, func(context.Context) error, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return nil, nil, errors.Join(err, closeAll(cctx))
	}
	if n := cfg.NATS; n != nil {
		o := natsd.Options{Name: n.Name, Listen: n.Listen, StoreDir: n.StoreDir, SyncAlways: n.SyncInterval == 0,
			SyncInterval: n.SyncInterval, Logger: d.log.Named("nats")}
		if c := n.Cluster; c != nil {
			o.Cluster = &natsd.ClusterOptions{Name: c.Name, Listen: c.Listen, Routes: c.Routes}
		}
		var err error
		if srv, err = natsd.New(o); err != nil {
			return nil, nil, err
		}
		if err := srv.Start(ctx); err != nil {
			return nil, nil, err
		}
		closers = append(closers, srv.Shutdown)
		d.log.Info("waiting for JetStream (a cluster needs a quorum of its relays)", "server", srv.Name())
		if err := srv.WaitJetStream(ctx); err != nil {
			return fail(err)
		}
	}
	o := jetstream.Options{Replicas: cfg.Store.Replicas, Name: d.nodeName(), Logger: d.log.Named("store")}
	if cfg.Store.URL != "" {
		o.URL, o.CAFile, o.CertFile, o.KeyFile, o.CredentialsFile = cfg.Store.URL, cfg.Store.CAFile, cfg.Store.CertFile, cfg.Store.KeyFile, cfg.Store.CredentialsFile
	} else {
		nc, err := srv.Conn(nats.Name(d.nodeName()))
		if err != nil {
			return fail(err)
		}
		closers = append(closers, func(context.Context) error { nc.Close(); return nil })
		o.Conn = nc
	}
	st, err := jetstream.Open(ctx, o)
	if err != nil {
		return fail(fmt.Errorf("open store: %w", err))
	}
	closers = append(closers, func(ctx context.Context) error {
		if err := st.Close(ctx); err != nil {
			return fmt.Errorf("close store: %w", err)
		}
		return nil
	})
	return st, closeAll, nil
}
