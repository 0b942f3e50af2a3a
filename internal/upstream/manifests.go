package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/berth-registry/berth/internal/reference"
)

// Descriptor describes content: a manifest the registry serves, or an
// entry of an image index (the referrers list).
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       reference.Digest  `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// manifestPath is the path of a manifest of repo; ref is validated.
func manifestPath(repo, ref string) string { return "/v2/" + repo + "/manifests/" + ref }

// HeadManifest asks for the descriptor of the manifest repo:ref (a tag or a
// digest) without its body: the media type, the digest the registry names
// in Docker-Content-Digest and the size.
func (c *Client) HeadManifest(ctx context.Context, repo, ref string) (Descriptor, error) {
	op := "head manifest " + repo + ":" + ref
	if err := validRepo(repo); err != nil {
		return Descriptor{}, err
	}
	if err := validRef(ref); err != nil {
		return Descriptor{}, err
	}
	resp, err := c.do(ctx, &call{method: http.MethodHead, path: manifestPath(repo, ref),
		header: http.Header{"Accept": {manifestAccept}}, scopes: pullScope(repo)})
	if err != nil {
		return Descriptor{}, c.wrap(op, err)
	}
	drain(resp)
	d := Descriptor{MediaType: mediaType(resp.Header.Get("Content-Type")), Size: resp.ContentLength}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		if d.Digest, err = validDigest(reference.Digest(h)); err != nil {
			return Descriptor{}, c.wrap(op, fmt.Errorf("Docker-Content-Digest: %w", err))
		}
		if reference.IsDigest(ref) && d.Digest.Algorithm() == reference.Digest(ref).Algorithm() && d.Digest != reference.Digest(ref) {
			return Descriptor{}, c.wrap(op, fmt.Errorf("%w: the registry names %s", ErrDigestMismatch, d.Digest))
		}
	} else if reference.IsDigest(ref) {
		d.Digest = reference.Digest(ref)
	} else {
		return Descriptor{}, c.wrap(op, errors.New("the answer has no Docker-Content-Digest"))
	}
	return d, nil
}

// GetManifest fetches the manifest repo:ref (a tag or a digest), of at most
// MaxManifestSize bytes, and returns its descriptor and bytes. The digest
// is computed from the bytes (with the algorithm of ref when ref is a
// digest, sha256 otherwise): when it differs from the digest ref names, or
// from the registry's Docker-Content-Digest of the same algorithm, the
// error matches ErrDigestMismatch.
func (c *Client) GetManifest(ctx context.Context, repo, ref string) (Descriptor, []byte, error) {
	op := "get manifest " + repo + ":" + ref
	if err := validRepo(repo); err != nil {
		return Descriptor{}, nil, err
	}
	if err := validRef(ref); err != nil {
		return Descriptor{}, nil, err
	}
	resp, err := c.do(ctx, &call{method: http.MethodGet, path: manifestPath(repo, ref),
		header: http.Header{"Accept": {manifestAccept}}, scopes: pullScope(repo)})
	if err != nil {
		return Descriptor{}, nil, c.wrap(op, err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > MaxManifestSize {
		return Descriptor{}, nil, c.wrap(op, fmt.Errorf("the manifest's %d bytes exceed the limit of %d", resp.ContentLength, MaxManifestSize))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return Descriptor{}, nil, c.wrap(op, fmt.Errorf("read the manifest: %w", err))
	}
	if len(body) > MaxManifestSize {
		return Descriptor{}, nil, c.wrap(op, fmt.Errorf("the manifest exceeds the limit of %d bytes", MaxManifestSize))
	}
	alg := reference.SHA256
	if reference.IsDigest(ref) {
		alg = reference.Digest(ref).Algorithm()
	}
	d := Descriptor{Digest: alg.FromBytes(body), Size: int64(len(body)), MediaType: mediaType(resp.Header.Get("Content-Type"))}
	if reference.IsDigest(ref) && d.Digest != reference.Digest(ref) {
		return Descriptor{}, nil, c.wrap(op, fmt.Errorf("%w: the body hashes to %s", ErrDigestMismatch, d.Digest))
	}
	if h := reference.Digest(resp.Header.Get("Docker-Content-Digest")); h != "" && h.Algorithm() == alg && h != d.Digest {
		return Descriptor{}, nil, c.wrap(op, fmt.Errorf("%w: the body hashes to %s, the registry names %.80s", ErrDigestMismatch, d.Digest, h))
	}
	var fields struct {
		MediaType    string            `json:"mediaType"`
		ArtifactType string            `json:"artifactType"`
		Annotations  map[string]string `json:"annotations"`
	}
	if json.Unmarshal(body, &fields) == nil {
		if d.MediaType == "" || d.MediaType == "application/json" || d.MediaType == "text/plain" {
			d.MediaType = fields.MediaType
		}
		d.ArtifactType, d.Annotations = fields.ArtifactType, fields.Annotations
	}
	return d, body, nil
}

// mediaType is the media type of a Content-Type value, without parameters.
func mediaType(ct string) string {
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		return mt
	}
	return ct
}

// PutManifest uploads payload as the manifest repo:ref (a tag or its
// digest) of mediaType and returns its digest (sha256, or the algorithm of
// ref when ref is a digest). A ref digest that payload does not hash to is
// refused before sending (ErrDigestMismatch).
func (c *Client) PutManifest(ctx context.Context, repo, ref, mediaType string, payload []byte) (reference.Digest, error) {
	op := "put manifest " + repo + ":" + ref
	if err := validRepo(repo); err != nil {
		return "", err
	}
	if err := validRef(ref); err != nil {
		return "", err
	}
	if mediaType == "" {
		return "", c.wrap(op, errors.New("no media type"))
	}
	if len(payload) > MaxManifestSize {
		return "", c.wrap(op, fmt.Errorf("the manifest's %d bytes exceed the limit of %d", len(payload), MaxManifestSize))
	}
	alg := reference.SHA256
	if reference.IsDigest(ref) {
		alg = reference.Digest(ref).Algorithm()
	}
	d := alg.FromBytes(payload)
	if reference.IsDigest(ref) && d != reference.Digest(ref) {
		return "", c.wrap(op, fmt.Errorf("%w: the payload hashes to %s", ErrDigestMismatch, d))
	}
	if payload == nil {
		payload = []byte{}
	}
	resp, err := c.do(ctx, &call{method: http.MethodPut, path: manifestPath(repo, ref), body: payload,
		header: http.Header{"Content-Type": {mediaType}}, scopes: pushScope(repo)})
	if err != nil {
		return "", c.wrap(op, err)
	}
	drain(resp)
	if h := reference.Digest(resp.Header.Get("Docker-Content-Digest")); h != "" && h.Algorithm() == alg && h != d {
		return "", c.wrap(op, fmt.Errorf("%w: the payload hashes to %s, the registry names %.80s", ErrDigestMismatch, d, h))
	}
	return d, nil
}

// referrersTag is the tag of the referrers tag schema for a subject digest:
// <alg>-<hex>, the algorithm cut to 32 characters and the hex to 64.
func referrersTag(d reference.Digest) string {
	alg, enc := string(d.Algorithm()), d.Encoded()
	if len(alg) > 32 {
		alg = alg[:32]
	}
	if len(enc) > 64 {
		enc = enc[:64]
	}
	return alg + "-" + enc
}

// Referrers lists the manifests whose subject is d in repo: the registry's
// referrers API, or, where it answers 404, the image index tagged by the
// referrers tag schema ("sha256-<hex>"); with neither, the list is empty.
func (c *Client) Referrers(ctx context.Context, repo string, d reference.Digest) ([]Descriptor, error) {
	op := "referrers of " + repo + "@" + string(d)
	if err := validRepo(repo); err != nil {
		return nil, err
	}
	d, err := validDigest(d)
	if err != nil {
		return nil, err
	}
	out := []Descriptor{}
	add := func(body []byte) error {
		var index struct {
			Manifests []Descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(body, &index); err != nil {
			return fmt.Errorf("the list is not an image index: %w", err)
		}
		for _, m := range index.Manifests {
			if _, err := validDigest(m.Digest); err != nil {
				return fmt.Errorf("an entry: %w", err)
			}
			out = append(out, m)
		}
		return nil
	}
	// The API's list may come in pages, as tag lists do.
	err = c.pages(ctx, &call{method: http.MethodGet, path: "/v2/" + repo + "/referrers/" + string(d),
		header: http.Header{"Accept": {MediaTypeOCIIndex}}, scopes: pullScope(repo)}, add)
	if len(out) == 0 && errors.Is(err, ErrNotFound) {
		var body []byte
		_, body, err = c.GetManifest(ctx, repo, referrersTag(d))
		if errors.Is(err, ErrNotFound) {
			return []Descriptor{}, nil
		}
		if err != nil {
			return nil, c.wrap(op, fmt.Errorf("the referrers tag schema: %w", err))
		}
		err = add(body)
	}
	if err != nil {
		return nil, c.wrap(op, err)
	}
	return out, nil
}
