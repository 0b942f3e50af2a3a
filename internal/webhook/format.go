package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/berth-registry/berth/internal/events"
	"strconv"
	"strings"
	"time"
)

// Formats of a delivery's body.
const (
	// FormatDistribution is CNCF Distribution's notification envelope,
	// which existing receivers of Docker registry notifications accept.
	FormatDistribution = "distribution"
	// FormatCloudEvents is a CloudEvents 1.0 event in structured JSON mode.
	FormatCloudEvents = "cloudevents"
)

// Media types of the two formats.
const (
	DistributionMediaType = "application/vnd.docker.distribution.events.v1+json"
	CloudEventsMediaType  = "application/cloudevents+json; charset=utf-8"
)

// Headers of a delivery.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of
	// "<t>.<body>" keyed with the endpoint's secret>".
	SignatureHeader = "Berth-Signature"
	// EventHeader carries the event id, the same on every attempt.
	EventHeader = "Berth-Event-Id"
	// AttemptHeader numbers the attempts at one delivery from 1.
	AttemptHeader = "Berth-Delivery-Attempt"
)

// envelope is Distribution's notification body.
type envelope struct {
	Events []json.RawMessage `json:"events"`
}

// cloudEvent is a CloudEvents 1.0 event, structured mode.
type cloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            string          `json:"time"`
	Subject         string          `json:"subject,omitempty"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// Encode renders a stored event (its JSON payload) in a format, returning
// the body and its content type.
func Encode(format string, payload []byte) ([]byte, string, error) {
	switch format {
	case FormatDistribution:
		var ev map[string]json.RawMessage
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, "", fmt.Errorf("decode event: %w", err)
		}
		// Distribution has no tag_delete: a tag's deletion is a delete
		// whose target names the tag.
		if string(ev["action"]) == `"`+events.ActionTagDelete+`"` {
			ev["action"] = json.RawMessage(`"` + events.ActionDelete + `"`)
			p, err := json.Marshal(ev)
			if err != nil {
				return nil, "", fmt.Errorf("encode event: %w", err)
			}
			payload = p
		}
		b, err := json.Marshal(envelope{Events: []json.RawMessage{payload}})
		return b, DistributionMediaType, err
	case FormatCloudEvents:
		var ev events.Event
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, "", fmt.Errorf("decode event: %w", err)
		}
		ce := cloudEvent{SpecVersion: "1.0", ID: ev.ID, Source: "berth://" + ev.Source.Addr, Type: "io.berth." + ev.Action,
			Time: ev.Timestamp.Format(time.RFC3339Nano), DataContentType: "application/json", Data: payload}
		if t := ev.Target; t != nil {
			ce.Subject = t.Repository
			switch {
			case t.Tag != "":
				ce.Subject += ":" + t.Tag
			case t.Digest != "":
				ce.Subject += "@" + t.Digest
			}
		}
		b, err := json.Marshal(ce)
		return b, CloudEventsMediaType, err
	}
	return nil, "", fmt.Errorf("unknown webhook format %q", format)
}

// Sign returns the SignatureHeader value of a body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// ErrBadSignature is returned by Verify.
var ErrBadSignature = errors.New("webhook signature does not match")

// Verify checks a SignatureHeader value against a body, and that it was
// made within tolerance of now (0: any time), as a receiver would.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return fmt.Errorf("%w: malformed header", ErrBadSignature)
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return fmt.Errorf("%w: timestamp outside tolerance", ErrBadSignature)
		}
	}
	if !hmac.Equal([]byte(mac(secret, ts, body)), []byte(sig)) {
		return ErrBadSignature
	}
	return nil
}
