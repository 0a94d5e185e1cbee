// Package apireason maps the API's Reason enum (proto/chainbroker/v1/reason.proto)
// to the reason strings of google.rpc.ErrorInfo and audit events, and back.
//
// The wire string is the enum value's name without its "REASON_" prefix
// (REASON_REQUEST_INVALID is "REQUEST_INVALID"): the prefix only satisfies
// protobuf's enum scoping, and callers' scripts match the strings as they
// have always been.
package apireason

import (
	"strings"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

const prefix = "REASON_"

// String is r's ErrorInfo.reason string ("" for REASON_UNSPECIFIED and
// values this build does not know).
func String(r pb.Reason) string {
	name, ok := pb.Reason_name[int32(r)]
	if !ok || r == pb.Reason_REASON_UNSPECIFIED {
		return ""
	}
	return strings.TrimPrefix(name, prefix)
}

// Parse is the Reason whose string is s; REASON_UNSPECIFIED and false for
// a string that names none.
func Parse(s string) (pb.Reason, bool) {
	if s == "" || strings.HasPrefix(s, prefix) {
		return pb.Reason_REASON_UNSPECIFIED, false
	}
	v, ok := pb.Reason_value[prefix+s]
	return pb.Reason(v), ok && v != 0
}

// All is every reason string, in enum order.
func All() []string {
	vals := pb.Reason(0).Descriptor().Values()
	out := make([]string, 0, vals.Len()-1)
	for i := range vals.Len() {
		if r := pb.Reason(vals.Get(i).Number()); r != pb.Reason_REASON_UNSPECIFIED {
			out = append(out, String(r))
		}
	}
	return out
}
