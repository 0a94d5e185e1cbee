package broker

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/chainbroker/chainbroker/oauth"
)

// MaxUpstreamDescriptionBytes bounds an authorization server's
// error_description wherever it is passed on (messages, logs, audit events,
// ErrorInfo metadata), ellipsis included.
const MaxUpstreamDescriptionBytes = 512

// MaxUpstreamCodeBytes bounds an authorization server's "error" code in
// messages and ErrorInfo metadata (codes are short words; a long one is
// noise).
const MaxUpstreamCodeBytes = 64

// BoundText cuts untrusted text to at most max bytes (max >= 4), ellipsis
// included, on a character boundary, as valid UTF-8.
func BoundText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// upstreamSummary is an authorization server's OAuth error as messages
// show it, bounded: "code: description".
func upstreamSummary(oe *oauth.Error) string {
	if oe.Description == "" {
		return BoundText(oe.Code, MaxUpstreamCodeBytes)
	}
	return BoundText(oe.Code, MaxUpstreamCodeBytes) + ": " + BoundText(oe.Description, MaxUpstreamDescriptionBytes)
}

// EndedReason is the reason of a call whose context ended with ctxErr.
func EndedReason(ctxErr error) Reason {
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		return ReasonRequestDeadlineExceeded
	}
	return ReasonRequestCancelled
}

// truncate bounds untrusted text echoed in messages and audit events (128
// bytes), on a character boundary and as valid UTF-8 (protobuf strings must
// be).
func truncate(s string) string { return BoundText(s, 128) }

func quote(s string) string { return `"` + truncate(s) + `"` }

// boundedList is at most n of list, each truncated: how a list from a
// request that may not have passed its checks is recorded.
func boundedList(list []string, n int) []string {
	if len(list) == 0 {
		return nil
	}
	out := make([]string, 0, min(len(list), n))
	for _, s := range list[:min(len(list), n)] {
		out = append(out, truncate(s))
	}
	return out
}
