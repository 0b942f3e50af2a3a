package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/events"
)

func TestSignAndVerify(t *testing.T) {
	body := []byte(`{"events":[]}`)
	at := time.Unix(1700000000, 0)
	h := Sign("0123456789abcdef", at, body)
	// The value a receiver computes with openssl:
	//   printf '%s.%s' 1700000000 '{"events":[]}' | openssl dgst -sha256 -hmac 0123456789abcdef
	if want := "t=1700000000,v1=1f1c43683e76ee83b09613ab56fa5bdd3ce55f3ee41db00a92e22eea0376899e"; h != want {
		t.Fatalf("Sign = %s, want %s", h, want)
	}
	if err := Verify("0123456789abcdef", h, body, at.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("a fresh signature failed: %v", err)
	}
	for name, c := range map[string]struct {
		secret, header string
		body           []byte
		now            time.Time
	}{
		"other secret":    {"fedcba9876543210", h, body, at},
		"other body":      {"0123456789abcdef", h, []byte(`{"events":[{}]}`), at},
		"too old":         {"0123456789abcdef", h, body, at.Add(time.Hour)},
		"malformed":       {"0123456789abcdef", "v1=abc", body, at},
		"timestamp moved": {"0123456789abcdef", "t=1700000001" + h[len("t=1700000000"):], body, at},
	} {
		if err := Verify(c.secret, c.header, c.body, c.now, 5*time.Minute); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature", name, err)
		}
	}
}

func TestEncodeFormats(t *testing.T) {
	ctx := events.WithOrigin(context.Background(), events.Origin{Actor: "alice", Request: events.Request{Addr: "127.0.0.1", Method: "DELETE"}})
	ev := events.New(ctx, events.ActionTagDelete, events.Target{Repository: "team/app", Tag: "v1"})

	body, ctype, err := Encode(FormatDistribution, ev.Payload)
	if err != nil || ctype != DistributionMediaType {
		t.Fatalf("distribution: %q %v", ctype, err)
	}
	var env struct {
		Events []events.Event `json:"events"`
	}
	if err := json.Unmarshal(body, &env); err != nil || len(env.Events) != 1 {
		t.Fatalf("distribution envelope %s: %v", body, err)
	}
	got := env.Events[0]
	if got.ID != ev.ID || got.Action != "delete" || got.Target.Repository != "team/app" || got.Target.Tag != "v1" || got.Actor.Name != "alice" {
		t.Errorf("distribution event: %+v", got)
	}

	body, ctype, err = Encode(FormatCloudEvents, ev.Payload)
	if err != nil || ctype != CloudEventsMediaType {
		t.Fatalf("cloudevents: %q %v", ctype, err)
	}
	var ce struct {
		SpecVersion, ID, Type, Source, Subject, Time string
		Data                                         events.Event
	}
	if err := json.Unmarshal(body, &ce); err != nil {
		t.Fatal(err)
	}
	if ce.SpecVersion != "1.0" || ce.ID != ev.ID || ce.Type != "io.berth.tag_delete" || ce.Subject != "team/app:v1" ||
		ce.Source == "" || ce.Data.Target.Tag != "v1" {
		t.Errorf("cloudevent: %s", body)
	}
	if _, err := time.Parse(time.RFC3339Nano, ce.Time); err != nil {
		t.Errorf("cloudevent time %q: %v", ce.Time, err)
	}
	if _, _, err := Encode("xml", ev.Payload); err == nil {
		t.Error("an unknown format encoded")
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	d := NewDispatcher(nil, Options{BackoffBase: time.Second, BackoffMax: time.Minute}, nil)
	for failed, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 10: time.Minute, 100: time.Minute} {
		for range 50 {
			if w := d.backoff(failed); w < want/2 || w > want {
				t.Fatalf("backoff after %d failures = %s, want within [%s, %s]", failed, w, want/2, want)
			}
		}
	}
}

func TestSpecChecks(t *testing.T) {
	ok := Spec{Name: "ci", URL: "https://ci.example.com/hook"}
	if err := ok.check(); err != nil {
		t.Fatal(err)
	}
	if ok.Format != FormatDistribution || len(ok.Secret) < 32 || ok.Timeout != DefaultTimeout || len(ok.Actions) != len(events.DefaultActions) {
		t.Errorf("defaults: %+v", ok)
	}
	for name, sp := range map[string]Spec{
		"no name":     {URL: "https://x/"},
		"bad name":    {Name: "A/B", URL: "https://x/"},
		"ftp":         {Name: "a", URL: "ftp://x/"},
		"relative":    {Name: "a", URL: "/hook"},
		"credentials": {Name: "a", URL: "https://user:pw@x/"},
		"bad event":   {Name: "a", URL: "https://x/", Actions: []string{"push", "explode"}},
		"bad format":  {Name: "a", URL: "https://x/", Format: "xml"},
		"short":       {Name: "a", URL: "https://x/", Secret: "short"},
		"slow":        {Name: "a", URL: "https://x/", Timeout: time.Hour},
	} {
		if err := sp.check(); err == nil {
			t.Errorf("%s: accepted %+v", name, sp)
		}
	}
}
