package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/edgerelay/edgerelay/relay/api"
)

// cmdToken runs `relayctl token mint -user U -workspace WS -role ROLE
// [-ttl 1h]`: it prints an app API bearer token signed with the config's
// auth.hs256_secret_file (development only).
func cmdToken(_ context.Context, g *globals, args []string) error {
	fs := g.flags()
	user := fs.String("user", "", "user id (sub claim)")
	ws := fs.String("workspace", "", "workspace (ws claim)")
	role := fs.String("role", api.RoleUser, "role: owner, super_admin, admin or user")
	ttl := fs.Duration("ttl", time.Hour, "validity")
	if _, err := g.args(fs, args, 0, 0); err != nil {
		return err
	}
	if *ttl <= 0 {
		return errors.New("token mint: -ttl must be positive")
	}
	cfg, err := g.config()
	if err != nil {
		return err
	}
	if cfg.Auth.HS256SecretFile == "" {
		return errors.New("token mint: the config has no auth.hs256_secret_file (tokens for a public key are minted by the upstream platform)")
	}
	secret, err := os.ReadFile(cfg.Auth.HS256SecretFile)
	if err != nil {
		return fmt.Errorf("token mint: %w", err)
	}
	now := time.Now()
	c := &api.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: cfg.Auth.Issuer, Audience: jwt.ClaimStrings{cfg.Auth.Audience}, Subject: *user,
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(*ttl)),
		},
		Workspace: *ws,
		Role:      *role,
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("token mint: %w (set -user, -workspace and -role)", err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(bytes.TrimSpace(secret))
	if err != nil {
		return fmt.Errorf("token mint: %w", err)
	}
	if g.json {
		return g.writeJSON(map[string]any{"token": tok, "expires_at": c.ExpiresAt.Time.UTC()})
	}
	fmt.Fprintln(g.stdout, tok)
	return nil
}
