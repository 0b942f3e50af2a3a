package adminclient

import (
	"context"
	"encoding/json"
	"net/http"
)

// FsckBlob is a blob the consistency check found wrong.
type FsckBlob struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// FsckReport is what POST /api/v1/fsck answers.
type FsckReport struct {
	Stored       int        `json:"stored"`
	Recorded     int        `json:"recorded"`
	Orphans      []FsckBlob `json:"orphans"`
	Young        int        `json:"young"`
	Missing      []FsckBlob `json:"missing"`
	SizeMismatch []FsckBlob `json:"size_mismatch"`
	Removed      []FsckBlob `json:"removed"`
	RemovedBytes int64      `json:"removed_bytes"`
	// Strays are objects that hold no blob (S3), RemovedStrays those
	// repair deleted.
	Strays        []FsckStray `json:"strays"`
	RemovedStrays []FsckStray `json:"removed_strays"`
}

// FsckStray is an object of the blob store that holds no blob.
type FsckStray struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
}

// Fsck runs the consistency check of the blob store against the metadata
// (repair: remove the orphans).
func (c *Client) Fsck(ctx context.Context, repair bool) (FsckReport, json.RawMessage, error) {
	var out FsckReport
	path := "/api/v1/fsck"
	if repair {
		path += "?repair=true"
	}
	raw, err := c.do(ctx, http.MethodPost, path, nil, &out)
	return out, raw, err
}
