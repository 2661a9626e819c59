package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

const revokeSynopsis = `Revokes a token subject (the tokens' sub claim) over gRPC: every stream
opened with a token of that subject ends, on every node sharing the broker,
within seconds (--presence-interval), and the subject's tokens are refused
until --until. It takes an admin token (herald token --admin).

  herald revoke --subject billing-service --until 24h --token "$ADMIN_TOKEN"
  herald revoke --subject billing-service --until 2030-01-01T00:00:00Z --token "$ADMIN_TOKEN"
  herald revoke --subject billing-service --until 0s --token "$ADMIN_TOKEN"   # lift it

  herald revoke --list --token "$ADMIN_TOKEN"                                # those in force

Keep --until past the expiry of the subject's longest-lived token.`

type revokeFlags struct {
	dial    dialFlags
	subject string
	until   string
	list    bool
	timeout time.Duration
	token   string
}

func newRevokeCmd() *cobra.Command {
	var r revokeFlags
	cmd := &cobra.Command{
		Use:   "revoke [flags]",
		Short: "End a token subject's streams and refuse its tokens until a time",
		Long:  revokeSynopsis,
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return r.run(cmd, cmd.OutOrStdout()) },
	}
	fs := cmd.Flags()
	r.dial.register(fs)
	fs.StringVar(&r.subject, "subject", "", "the sub claim of the tokens to revoke (required unless --list)")
	fs.StringVar(&r.until, "until", "", "until when: an RFC 3339 time (2030-01-01T00:00:00Z) or a duration from now (24h); 0s lifts a revocation (required unless --list)")
	fs.BoolVar(&r.list, "list", false, "print the revocations in force instead, one per line: subject, then until")
	fs.DurationVar(&r.timeout, "timeout", 10*time.Second, "give up after this long")
	fs.StringVar(&r.token, "token", "", "an admin token (herald token --admin)")
	markSettings(cmd)
	return cmd
}

// parseUntil reads --until: an RFC 3339 time, or a duration from now.
func parseUntil(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("--until %q is neither an RFC 3339 time (2030-01-01T00:00:00Z) nor a duration (24h)", s)
}

func (r *revokeFlags) run(cmd *cobra.Command, stdout io.Writer) error {
	var until time.Time
	if !r.list {
		if r.subject == "" || r.until == "" {
			return usagef(cmd, "--subject and --until are required (or --list)")
		}
		var err error
		if until, err = parseUntil(r.until, time.Now()); err != nil {
			return usagef(cmd, "%v", err)
		}
	}
	conn, err := r.dial.dial()
	if err != nil {
		return asUsage(fmt.Errorf("revoke: %w", err))
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(withToken(cmd.Context(), r.token), r.timeout)
	defer cancel()
	client := heraldv1.NewAdminServiceClient(conn)
	if r.list {
		resp, err := client.ListRevocations(ctx, &heraldv1.ListRevocationsRequest{})
		if err != nil {
			return fmt.Errorf("revoke: %s", r.dial.rpcError(ctx, err))
		}
		for _, rv := range resp.GetRevocations() {
			fmt.Fprintf(stdout, "%s\t%s\n", rv.GetSubject(), rv.GetUntil().AsTime().UTC().Format(time.RFC3339))
		}
		return nil
	}
	resp, err := client.CreateRevocation(ctx, &heraldv1.CreateRevocationRequest{Subject: r.subject, Until: timestamppb.New(until)})
	if err != nil {
		return fmt.Errorf("revoke: %s", r.dial.rpcError(ctx, err))
	}
	rv := resp.GetRevocation()
	if rv.GetUntil().AsTime().After(time.Now()) {
		fmt.Fprintf(stdout, "revoked %s until %s\n", rv.GetSubject(), rv.GetUntil().AsTime().UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(stdout, "lifted the revocation of %s\n", rv.GetSubject())
	}
	return nil
}
