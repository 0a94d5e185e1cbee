package brokertest_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
)

func TestClock(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := brokertest.NewClock(start)
	c.Advance(90 * time.Second)
	if got := c.Now(); !got.Equal(start.Add(90 * time.Second)) {
		t.Errorf("after Advance: %v", got)
	}
	c.Set(start)
	if !c.Now().Equal(start) {
		t.Errorf("after Set: %v", c.Now())
	}
	if now := brokertest.NewClock(time.Time{}).Now(); now.IsZero() || time.Since(now) > time.Minute {
		t.Errorf("a zero start is not the current time: %v", now)
	}
}

func TestEndpointScriptsAndRecords(t *testing.T) {
	ctx := context.Background()
	e := &brokertest.Endpoint{
		Exchange:  brokertest.Sequence(brokertest.Unavailable(true), brokertest.Refuse("invalid_grant", "no")),
		JWTBearer: brokertest.AccessToken("at", 60),
	}
	form := func(gt string) oauth.Request { return oauth.Request{Form: url.Values{"grant_type": {gt}}} }
	_, err := e.Token(ctx, form(oauth.GrantTypeTokenExchange))
	if !errors.Is(err, oauth.ErrUnavailable) || !errors.Is(err, oauth.ErrNotSent) {
		t.Errorf("first exchange: %v", err)
	}
	for range 2 { // the last handler repeats
		var oe *oauth.Error
		if _, err := e.Token(ctx, form(oauth.GrantTypeTokenExchange)); !errors.As(err, &oe) || oe.Code != "invalid_grant" {
			t.Errorf("later exchange: %v", err)
		}
	}
	if resp, err := e.Token(ctx, form(oauth.GrantTypeJWTBearer)); err != nil || resp.AccessToken != "at" {
		t.Errorf("jwt bearer: %+v, %v", resp, err)
	}
	if _, err := e.Token(ctx, form("password")); !errors.Is(err, oauth.ErrConfig) {
		t.Errorf("unscripted grant type: %v", err)
	}
	if e.Calls(oauth.GrantTypeTokenExchange) != 3 || e.Calls(oauth.GrantTypeJWTBearer) != 1 || len(e.Requests(oauth.GrantTypeTokenExchange)) != 3 {
		t.Errorf("calls %d/%d", e.Calls(oauth.GrantTypeTokenExchange), e.Calls(oauth.GrantTypeJWTBearer))
	}
}

func TestFaultyStore(t *testing.T) {
	ctx := context.Background()
	s := brokertest.NewFaultyStore(t)
	key := store.ReplayKey{Target: "b", Issuer: "a", JTI: "j"}
	s.Fail(brokertest.OpMark, nil)
	if err := s.Mark(ctx, key, time.Now().Add(time.Minute)); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("failing Mark: %v", err)
	}
	s.Heal(brokertest.OpMark)
	if err := s.Mark(ctx, key, time.Now().Add(time.Minute)); err != nil {
		t.Errorf("healed Mark: %v", err) // the failed call did not reach the store
	}
	if err := s.Mark(ctx, key, time.Now().Add(time.Minute)); !errors.Is(err, store.ErrReplayed) {
		t.Errorf("second Mark: %v", err)
	}
	boom := errors.New("boom")
	s.Fail(brokertest.OpAppend, boom)
	if _, err := s.Append(ctx, &store.Event{}); !errors.Is(err, boom) {
		t.Errorf("failing Append: %v", err)
	}
	if s.Calls(brokertest.OpMark) != 3 || s.Calls(brokertest.OpAppend) != 1 || len(s.Events(t)) != 0 {
		t.Errorf("calls %d/%d, %d events", s.Calls(brokertest.OpMark), s.Calls(brokertest.OpAppend), len(s.Events(t)))
	}
}
