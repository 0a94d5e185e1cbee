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
