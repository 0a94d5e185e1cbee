package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

// restJSON's decoder parses a checked body once; it must give what
// runtime.JSONPb's decoder gives for the same bytes: the same message, or an
// error with the same text (describeDecodeError reads it).
func FuzzRESTJSONDecoder(f *testing.F) {
	for _, seed := range []string{
		`{"subject_token":"x","target_domain":"domain-b"}`,
		"  \n\t{\"subjectToken\":\"x\",\n\"scope\":[\"a\",\"b\"]}\n",
		"\n\n  {\"subject_token\":7}",
		`{"subject_token":"x","bogus":1}`,
		`{"scope":"profile"}`,
		`{"subject_token":"x"} trailing`,
		`{"subject_token":"x"}{"target_domain":"y"}`,
		`{"subject_token":`,
		`subject_token=x`,
		`"a string"`,
		`null`,
		`[]`,
		``,
		`   `,
		`{"subject_token":"\ud800"}`,
		"{\"subject_token\":\"\xff\"}",
		`{"subject_token":"x","subject_token":"y"}`,
	} {
		f.Add([]byte(seed))
	}
	opts := runtime.JSONPb{UnmarshalOptions: protojson.UnmarshalOptions{}}
	f.Fuzz(func(t *testing.T, body []byte) {
		var want, got pb.ChainRequest
		wantErr := opts.NewDecoder(bytes.NewReader(body)).Decode(&want)
		j := &restJSON{opts}
		gotErr := j.NewDecoder(&checkedBody{Reader: bytes.NewReader(body), raw: body}).Decode(&got)
		if (wantErr == nil) != (gotErr == nil) || wantErr != nil && wantErr.Error() != gotErr.Error() {
			t.Fatalf("%q: JSONPb %v, restJSON %v", body, wantErr, gotErr)
		}
		if errors.Is(wantErr, io.EOF) != errors.Is(gotErr, io.EOF) {
			t.Fatalf("%q: EOF %v vs %v", body, wantErr, gotErr)
		}
		if wantErr == nil && !proto.Equal(&want, &got) {
			t.Fatalf("%q: %v vs %v", body, &want, &got)
		}
	})
}

// readBody reads the whole body, up to one byte over the limit, whatever
// the Content-Length says and however the body arrives.
func TestReadBody(t *testing.T) {
	big := strings.Repeat("a", MaxRequestBytes+100)
	for _, tt := range []struct {
		name    string
		body    string
		length  int64 // Content-Length; -1 unknown
		oneByte bool  // the body arrives one byte per Read
		want    int
	}{
		{"exact length", "hello", 5, false, 5},
		{"unknown length", "hello", -1, false, 5},
		{"empty", "", 0, false, 0},
		{"one byte at a time", "hello world", -1, true, 11},
		{"larger than the first buffer", strings.Repeat("b", 10_000), -1, false, 10_000},
		{"at the limit", big[:MaxRequestBytes], MaxRequestBytes, false, MaxRequestBytes},
		{"over the limit, said", big, int64(len(big)), false, MaxRequestBytes + 1},
		{"over the limit, unsaid", big, -1, true, MaxRequestBytes + 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var r io.Reader = strings.NewReader(tt.body)
			if tt.oneByte {
				r = iotest.OneByteReader(r)
			}
			req := &http.Request{Body: io.NopCloser(r), ContentLength: tt.length}
			got, err := readBody(req)
			if err != nil || len(got) != tt.want || string(got) != tt.body[:tt.want] {
				t.Errorf("read %d bytes, %v; want %d", len(got), err, tt.want)
			}
		})
	}
}
