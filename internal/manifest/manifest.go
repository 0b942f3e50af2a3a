// Package manifest parses and checks image manifests and indexes (OCI and
// Docker schema 2) and extracts what the registry must record about them:
// the blobs and manifests they reference, their subject and artifact type.
package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"

	"github.com/berth-registry/berth/internal/reference"
)

// Media types the registry accepts as manifests.
const (
	OCIManifest        = "application/vnd.oci.image.manifest.v1+json"
	OCIIndex           = "application/vnd.oci.image.index.v1+json"
	DockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	// EmptyJSON is the media type of the OCI empty descriptor used as the
	// config of artifacts.
	EmptyJSON = "application/vnd.oci.empty.v1+json"
)

// Known reports whether mediaType is a manifest media type the registry stores.
func Known(mediaType string) bool {
	switch mediaType {
	case OCIManifest, OCIIndex, DockerManifest, DockerManifestList:
		return true
	}
	return false
}

// IsIndex reports whether mediaType is a list of manifests.
func IsIndex(mediaType string) bool {
	return mediaType == OCIIndex || mediaType == DockerManifestList
}

// ErrInvalid is wrapped by every validation failure.
var ErrInvalid = errors.New("invalid manifest")

// ErrUnknownMediaType is wrapped when the media type is not a manifest type.
var ErrUnknownMediaType = errors.New("unknown manifest media type")

// Descriptor points to content by digest.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Platform     *Platform         `json:"platform,omitempty"`
}

// Platform describes the platform of an index entry.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// wire is the union of the manifest and index JSON forms.
type wire struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        *Descriptor       `json:"config,omitempty"`
	Layers        []Descriptor      `json:"layers,omitempty"`
	Manifests     []Descriptor      `json:"manifests,omitempty"`
	Subject       *Descriptor       `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// Manifest is what the registry records about a parsed manifest.
type Manifest struct {
	MediaType string
	// ArtifactType is the artifactType field, or for image manifests
	// without one the config media type, as the referrers API reports it.
	ArtifactType string
	// Blobs are the blobs the manifest needs in its repository (config and
	// layers); foreign layers with URLs are left out.
	Blobs []Descriptor
	// Children are the manifests an index lists.
	Children []Descriptor
	// Subject is the manifest this one refers to, if any.
	Subject     *Descriptor
	Annotations map[string]string
}

// Parse checks body as a manifest of the given Content-Type (which may be
// empty when the body names its media type) and returns what it references.
func Parse(contentType string, body []byte) (*Manifest, error) {
	if contentType != "" {
		// Parameters such as charset say nothing about the manifest.
		if mt, _, err := mime.ParseMediaType(contentType); err == nil {
			contentType = mt
		}
	}
	var w wire
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("%w: not valid JSON: %v", ErrInvalid, err)
	}
	mt := w.MediaType
	switch {
	case mt == "" && contentType != "":
		mt = contentType
	case mt != "" && contentType != "" && mt != contentType:
		return nil, fmt.Errorf("%w: mediaType %q does not match Content-Type %q", ErrInvalid, mt, contentType)
	case mt == "":
		return nil, fmt.Errorf("%w: no media type in Content-Type or body", ErrUnknownMediaType)
	}
	if !Known(mt) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownMediaType, mt)
	}
	if w.SchemaVersion == nil || *w.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: schemaVersion must be 2", ErrInvalid)
	}
	m := &Manifest{MediaType: mt, ArtifactType: w.ArtifactType, Annotations: w.Annotations}
	if w.Subject != nil {
		if err := checkDescriptor("subject", *w.Subject); err != nil {
			return nil, err
		}
		m.Subject = w.Subject
	}
	if IsIndex(mt) {
		if w.Config != nil || w.Layers != nil {
			return nil, fmt.Errorf("%w: an index has no config or layers", ErrInvalid)
		}
		for i, d := range w.Manifests {
			if err := checkDescriptor(fmt.Sprintf("manifests[%d]", i), d); err != nil {
				return nil, err
			}
		}
		m.Children = w.Manifests
		return m, nil
	}
	if w.Manifests != nil {
		return nil, fmt.Errorf("%w: an image manifest has no manifests list", ErrInvalid)
	}
	if w.Config == nil {
		return nil, fmt.Errorf("%w: config descriptor missing", ErrInvalid)
	}
	if err := checkDescriptor("config", *w.Config); err != nil {
		return nil, err
	}
	if m.ArtifactType == "" && mt == OCIManifest {
		m.ArtifactType = w.Config.MediaType
	}
	m.Blobs = append(m.Blobs, *w.Config)
	for i, d := range w.Layers {
		if err := checkDescriptor(fmt.Sprintf("layers[%d]", i), d); err != nil {
			return nil, err
		}
		if len(d.URLs) > 0 {
			continue // foreign layer: fetched from its URLs, not from us
		}
		m.Blobs = append(m.Blobs, d)
	}
	return m, nil
}

func checkDescriptor(where string, d Descriptor) error {
	if _, err := reference.ParseDigest(d.Digest); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, where, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%w: %s: negative size", ErrInvalid, where)
	}
	if d.MediaType == "" {
		return fmt.Errorf("%w: %s: mediaType missing", ErrInvalid, where)
	}
	return nil
}
