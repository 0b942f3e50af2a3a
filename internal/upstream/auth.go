package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// authState is what the client learned of the registry's authentication,
// shared by all goroutines.
type authState struct {
	mu sync.Mutex
	// basic is set once the registry asked for Basic credentials.
	basic bool
	// tokens holds bearer tokens by scope key (see scopeKey).
	tokens map[string]cachedToken
}

// cachedToken is a bearer token and when to stop using it.
type cachedToken struct {
	value   string
	expires time.Time
}

// Token lifetimes: the default when the realm names none, and the share of
// the lifetime (at most maxMargin) given up so that a token does not expire
// in flight.
const (
	defaultTokenTTL = 60 * time.Second
	maxMargin       = 30 * time.Second
	// maxTokenResponse bounds a token realm's answer.
	maxTokenResponse = 1 << 20
)

// scopeKey is the cache key of a set of scopes.
func scopeKey(scopes []string) string {
	s := slices.Clone(scopes)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), " ")
}

// secrets returns the cached tokens, to keep them out of error messages.
func (a *authState) secrets() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.tokens))
	for _, t := range a.tokens {
		out = append(out, t.value)
	}
	return out
}

// basicAuthorization is the Basic Authorization value of the credentials.
func (c *Client) basicAuthorization() string {
	r := http.Request{Header: http.Header{}}
	r.SetBasicAuth(c.user, c.pass)
	return r.Header.Get("Authorization")
}

// cachedAuthorization returns the Authorization value to send with k before
// any challenge: Basic credentials once the registry asked for them, or a
// live cached token for k's scopes; "" when there is none.
func (c *Client) cachedAuthorization(k *call) string {
	c.auth.mu.Lock()
	defer c.auth.mu.Unlock()
	if c.auth.basic && c.user != "" {
		return c.basicAuthorization()
	}
	if t, ok := c.auth.tokens[scopeKey(append(slices.Clone(k.scopes), k.extra...))]; ok && time.Now().Before(t.expires) {
		return "Bearer " + t.value
	}
	return ""
}

// answer meets the challenges of a 401 to k and returns the Authorization
// value to retry with: a fresh bearer token, or Basic credentials.
func (c *Client) answer(ctx context.Context, values []string, k *call) (string, error) {
	var basic bool
	for _, ch := range parseChallenges(values) {
		switch ch.scheme {
		case "bearer":
			return c.bearer(ctx, ch.params, k)
		case "basic":
			basic = true
		}
	}
	if !basic {
		return "", &StatusError{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "the registry's challenge has no Bearer or Basic scheme"}
	}
	if c.user == "" {
		return "", &StatusError{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "the registry wants Basic credentials and none are configured"}
	}
	c.auth.mu.Lock()
	c.auth.basic = true
	c.auth.mu.Unlock()
	return c.basicAuthorization(), nil
}

// bearer gets a token for a Bearer challenge: for its scope, or k's scopes
// when it names none, plus k's extra scopes. The token is cached under both
// the scopes asked for and k's own, so that the next such request sends it
// at once.
func (c *Client) bearer(ctx context.Context, params map[string]string, k *call) (string, error) {
	realm, err := c.realmURL(params["realm"])
	if err != nil {
		return "", err
	}
	scopes := k.scopes
	if s := strings.Fields(params["scope"]); len(s) > 0 {
		scopes = s
	}
	scopes = append(slices.Clone(scopes), k.extra...)
	tok, ttl, err := c.fetchToken(ctx, realm, params["service"], scopes)
	if err != nil {
		return "", err
	}
	margin := min(ttl/5, maxMargin)
	t := cachedToken{value: tok, expires: time.Now().Add(ttl - margin)}
	c.auth.mu.Lock()
	c.auth.tokens[scopeKey(scopes)] = t
	c.auth.tokens[scopeKey(append(slices.Clone(k.scopes), k.extra...))] = t
	c.auth.mu.Unlock()
	return "Bearer " + tok, nil
}

// realmURL validates a challenge's realm: an absolute http or https URL,
// and https when the registry is, should credentials be sent to it.
func (c *Client) realmURL(realm string) (*url.URL, error) {
	u, err := url.Parse(realm)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, &StatusError{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "the registry's Bearer challenge has no valid realm"}
	}
	if c.base.Scheme == "https" && u.Scheme == "http" && c.user != "" {
		return nil, fmt.Errorf("refusing to send credentials to the plain http token realm %s of an https registry", u.Host)
	}
	u.Fragment = ""
	return u, nil
}

// fetchToken asks the realm for a token for scopes, with Basic credentials
// when the client has them, and returns it with its lifetime.
func (c *Client) fetchToken(ctx context.Context, realm *url.URL, service string, scopes []string) (string, time.Duration, error) {
	u := *realm
	q := u.Query()
	if service != "" {
		q.Set("service", service)
	}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	if c.user != "" {
		q.Set("account", c.user)
	}
	u.RawQuery = q.Encode()
	where := realm.Host + realm.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", 0, fmt.Errorf("token request to %s: %w", where, err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("token request to %s: %w", where, scrubURLError(err))
	}
	if resp.StatusCode/100 != 2 {
		return "", 0, fmt.Errorf("token request to %s: %w", where, c.statusError(resp, ""))
	}
	defer resp.Body.Close()
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return "", 0, fmt.Errorf("token request to %s: read the answer: %w", where, err)
	}
	if len(raw) > maxTokenResponse {
		return "", 0, fmt.Errorf("token request to %s: the answer exceeds %d bytes", where, maxTokenResponse)
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return "", 0, fmt.Errorf("token request to %s: the answer is not the expected JSON", where)
	}
	tok := body.Token
	if tok == "" {
		tok = body.AccessToken
	}
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", 0, fmt.Errorf("token request to %s: %w", where, errors.New("the answer has no usable token"))
	}
	ttl := defaultTokenTTL
	if body.ExpiresIn > 0 && body.ExpiresIn < 1<<31 {
		ttl = time.Duration(body.ExpiresIn) * time.Second
	}
	return tok, ttl, nil
}

// challenge is one scheme of a WWW-Authenticate header with its
// parameters (names in lower case).
type challenge struct {
	scheme string
	params map[string]string
}

// parseChallenges parses WWW-Authenticate values (RFC 9110 section 11.6.1):
// schemes, each followed by comma-separated name=value parameters whose
// values may be quoted strings.
func parseChallenges(values []string) []challenge {
	var out []challenge
	for _, s := range values {
		for {
			s = strings.TrimLeft(s, " \t,")
			tok, rest := readToken(s)
			if tok == "" {
				break
			}
			after := strings.TrimLeft(rest, " \t")
			if strings.HasPrefix(after, "=") && len(out) > 0 {
				val, rest, ok := readValue(strings.TrimLeft(after[1:], " \t"))
				if !ok {
					break
				}
				out[len(out)-1].params[strings.ToLower(tok)] = val
				s = rest
				continue
			}
			out = append(out, challenge{scheme: strings.ToLower(tok), params: map[string]string{}})
			s = rest
		}
	}
	return out
}

// readToken reads an RFC 9110 token from the start of s.
func readToken(s string) (tok, rest string) {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func isTokenChar(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// readValue reads a parameter value, a quoted string or a token.
func readValue(s string) (val, rest string, ok bool) {
	if !strings.HasPrefix(s, `"`) {
		end := strings.IndexAny(s, ", \t")
		if end < 0 {
			end = len(s)
		}
		return s[:end], s[end:], true
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", false
}
