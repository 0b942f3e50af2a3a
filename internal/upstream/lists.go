package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Listing limits: the bytes of one page, and the pages of one listing (a
// registry whose Link headers loop must not keep the client forever).
const (
	maxPageBytes = 32 << 20
	maxPages     = 10000
)

// Tags lists the tags of repo, following the registry's pagination (Link:
// <...>; rel="next"). A missing repository gives an error matching
// ErrNotFound.
func (c *Client) Tags(ctx context.Context, repo string) ([]string, error) {
	if err := validRepo(repo); err != nil {
		return nil, err
	}
	tags := []string{}
	err := c.pages(ctx, &call{method: http.MethodGet, path: "/v2/" + repo + "/tags/list", query: c.firstPage(), scopes: pullScope(repo)},
		func(body []byte) error {
			var page struct {
				Tags []string `json:"tags"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				return fmt.Errorf("the page is not a tag list: %w", err)
			}
			tags = append(tags, page.Tags...)
			return nil
		})
	if err != nil {
		return nil, c.wrap("list the tags of "+repo, err)
	}
	return tags, nil
}

// Catalog lists the registry's repositories (those the credentials may
// see), following the registry's pagination.
func (c *Client) Catalog(ctx context.Context) ([]string, error) {
	repos := []string{}
	err := c.pages(ctx, &call{method: http.MethodGet, path: "/v2/_catalog", query: c.firstPage(), scopes: []string{"registry:catalog:*"}},
		func(body []byte) error {
			var page struct {
				Repositories []string `json:"repositories"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				return fmt.Errorf("the page is not a catalog: %w", err)
			}
			repos = append(repos, page.Repositories...)
			return nil
		})
	if err != nil {
		return nil, c.wrap("list the catalog", err)
	}
	return repos, nil
}

// firstPage is the query of a listing's first page.
func (c *Client) firstPage() url.Values {
	if c.pageSize == 0 {
		return nil
	}
	return url.Values{"n": {strconv.Itoa(c.pageSize)}}
}

// pages gets first and the pages its Link headers lead to, on the
// registry's own origin, and hands each page's body to each.
func (c *Client) pages(ctx context.Context, first *call, each func(body []byte) error) error {
	k := first
	seen := map[string]bool{}
	for page := 1; ; page++ {
		if page > maxPages {
			return fmt.Errorf("more than %d pages", maxPages)
		}
		resp, err := c.do(ctx, k)
		if err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxPageBytes+1))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("page %d: read: %w", page, err)
		}
		if len(body) > maxPageBytes {
			return fmt.Errorf("page %d exceeds %d bytes", page, maxPageBytes)
		}
		if err := each(body); err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
		link := nextLink(resp.Header.Values("Link"))
		if link == "" {
			return nil
		}
		next, err := resp.Request.URL.Parse(link)
		if err != nil {
			return fmt.Errorf("page %d: the next page's link does not parse", page)
		}
		next.Fragment = ""
		if !c.sameOrigin(next) {
			return fmt.Errorf("page %d: the next page's link leaves the registry for %s", page, next.Host)
		}
		if seen[next.String()] {
			return fmt.Errorf("page %d: the next page's link repeats an earlier one", page)
		}
		seen[next.String()] = true
		k = &call{method: http.MethodGet, url: next, header: first.header, scopes: first.scopes}
	}
}

// nextLink returns the target of the rel="next" link of Link header values
// (RFC 8288), or "".
func nextLink(values []string) string {
	for _, v := range values {
		for {
			v = strings.TrimLeft(v, " \t,")
			if !strings.HasPrefix(v, "<") {
				break
			}
			end := strings.IndexByte(v, '>')
			if end < 0 {
				break
			}
			target, params := v[1:end], v[end+1:]
			v = ""
			if i := strings.IndexByte(params, ','); i >= 0 {
				params, v = params[:i], params[i:]
			}
			for _, p := range strings.Split(params, ";") {
				name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
				if !strings.EqualFold(strings.TrimSpace(name), "rel") {
					continue
				}
				for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(val), `"`)) {
					if strings.EqualFold(rel, "next") {
						return target
					}
				}
			}
		}
	}
	return ""
}
