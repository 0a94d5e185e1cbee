package server

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// callKey holds the *callInfo of a call: one context value (one
// allocation) for what the interceptors find, the request id
// (withRequestID) and then the authentication (authInterceptor).
type callKey struct{}

// callInfo is what the interceptors found about a call. authInterceptor
// fills auth in place, before the call's handler runs: nothing reads it
// before.
type callInfo struct {
	requestID     string
	authenticated bool
	auth          authed
}

func callFrom(ctx context.Context) *callInfo {
	c, _ := ctx.Value(callKey{}).(*callInfo)
	return c
}

const mdRequestID = "x-request-id"

// withRequestID gives a call an id (Server.intercept), echoed in the
// x-request-id response header and logged with the chain: the context of
// the call's handler. A well-formed id sent by the caller (up to 64
// letters, digits, '-', '_', '.') is kept.
func withRequestID(ctx context.Context) context.Context {
	id := ""
	// ValueFromIncomingContext copies one key's values, not the whole metadata.
	if v := metadata.ValueFromIncomingContext(ctx, mdRequestID); len(v) > 0 && validRequestID(v[0]) {
		id = v[0]
	}
	if id == "" {
		id = newRequestID()
	}
	// The key is lower case already: no metadata.Pairs (a copy of it).
	_ = grpc.SetHeader(ctx, metadata.MD{mdRequestID: {id}})
	return context.WithValue(ctx, callKey{}, &callInfo{requestID: id})
}

// newRequestID is a fresh request id: 64 random bits in hex. An id
// correlates a call's log lines and answer, it guards nothing: math/rand/v2's
// generator (ChaCha8, seeded by the runtime, per thread) gives ids as unique
// as crypto/rand's without a system call per call.
func newRequestID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// RequestIDFromContext returns the call's request id.
func RequestIDFromContext(ctx context.Context) string {
	if c := callFrom(ctx); c != nil {
		return c.requestID
	}
	return ""
}
