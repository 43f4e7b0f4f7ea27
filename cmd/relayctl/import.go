package main

import (
	"context"
	"fmt"
	"net/url"

	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

// cmdImportBolt copies the directory of a bolt store file (devices,
// workspace settings, user preferences) into a running relayd through its
// socket API: the way from one relay on bolt to a cluster (docs/cluster.md).
// The old relayd must be stopped (the file is locked while it runs).
func cmdImportBolt(ctx context.Context, g *globals, args []string) error {
	fs := g.flags()
	rest, err := g.args(fs, args, 1, 1)
	if err != nil {
		return err
	}
	st, err := bolt.Open(rest[0], bolt.Options{})
	if err != nil {
		return fmt.Errorf("open %s (stop the relayd that uses it first): %w", rest[0], err)
	}
	defer st.Close(context.WithoutCancel(ctx))
	dir, err := st.ExportDirectory()
	if err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	esc := url.PathEscape
	for ws, set := range dir.Settings {
		if len(set) == 0 {
			continue
		}
		if err := c.putJSON(ctx, "/v1/workspaces/"+esc(ws)+"/settings", set, nil); err != nil {
			return fmt.Errorf("settings of workspace %s: %w", ws, err)
		}
	}
	for _, p := range dir.Preferences {
		if len(p.Preferences) == 0 {
			continue
		}
		if err := c.putJSON(ctx, "/v1/workspaces/"+esc(p.Workspace)+"/users/"+esc(p.User)+"/preferences", p.Preferences, nil); err != nil {
			return fmt.Errorf("preferences of %s/%s: %w", p.Workspace, p.User, err)
		}
	}
	for i, d := range dir.Devices {
		body := map[string]string{"platform": string(d.Platform), "token": d.Token, "app": d.App}
		for k, v := range map[string]string{"environment": d.Environment, "name": d.Name, "public_key": d.PublicKey} {
			if v != "" {
				body[k] = v
			}
		}
		path := "/v1/workspaces/" + esc(d.Workspace) + "/users/" + esc(d.User) + "/devices/" + esc(d.ID)
		if err := c.putJSON(ctx, path, body, nil); err != nil {
			return fmt.Errorf("device %s/%s/%s (%d of %d imported): %w", d.Workspace, d.User, d.ID, i, len(dir.Devices), err)
		}
	}
	res := map[string]int{"workspaces": len(dir.Settings), "users_with_preferences": len(dir.Preferences), "devices": len(dir.Devices)}
	if g.json {
		return g.writeJSON(res)
	}
	fmt.Fprintf(g.stdout, "imported %d devices, the settings of %d workspaces and the preferences of %d users from %s\n",
		res["devices"], res["workspaces"], res["users_with_preferences"], rest[0])
	return nil
}
