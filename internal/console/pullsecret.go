package console

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/kube"
	"github.com/berth-registry/berth/internal/reference"
)

// The seed's workflow in the browser: a pull-only robot scoped to one
// repository, and the Kubernetes Secret that holds its credentials.

// expiries are the robot lifetimes the form offers (the first is the
// default).
var expiries = []struct{ Value, Label string }{
	{"90d", "90 days"}, {"30d", "30 days"}, {"7d", "7 days"}, {"1d", "1 day"}, {"365d", "1 year"}, {"never", "never"},
}

// k8sName is a Kubernetes object or namespace name (RFC 1123 label).
var k8sName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// robotName is what a robot's short name may be (auth checks it again).
var robotName = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`)

// pullSecretForm is the form's data.
type pullSecretForm struct {
	Repo, Robot, Namespace, Secret, Expires string
	Expiries                                []struct{ Value, Label string }
	Message                                 string
}

// pullSecretResult is what the page shows once: the robot, its secret and
// the ways to put it into a cluster.
type pullSecretResult struct {
	Repo, Robot, Password, Expires string
	YAML, Apply, BerthCommand      string
}

// mayCreateRobots returns the repository of the request if the viewer
// may make robots in its namespace (admins and the namespace's owners,
// the admin API's rule).
func (h *Handler) mayCreateRobots(r *http.Request, v *viewer, name string) (string, error) {
	if err := reference.ValidateName(name); err != nil {
		return "", errorf(http.StatusBadRequest, "Not a repository name: "+err.Error())
	}
	if v.AuthOff() {
		return "", errorf(http.StatusNotFound, "This registry runs without authentication: a pull needs no credentials.")
	}
	if ok, err := h.can(r, v, name, auth.Pull); err != nil {
		return "", err
	} else if !ok {
		return "", errorf(http.StatusNotFound, "No repository "+name+" that you may see.")
	}
	if !v.SignedIn() {
		return "", errorf(http.StatusForbidden, "Sign in as an owner of "+auth.Namespace(name)+" to make pull credentials.")
	}
	err := h.opts.Accounts.RequireOwner(r.Context(), v.p, auth.Namespace(name))
	if errors.Is(err, auth.ErrForbidden) {
		return "", errorf(http.StatusForbidden, "Only the owners of "+auth.Namespace(name)+" and administrators make robot accounts.")
	}
	return name, err
}

// pullSecretForm asks for the robot's expiry and the Secret's name and
// namespace.
func (h *Handler) pullSecretForm(w http.ResponseWriter, r *http.Request, v *viewer) error {
	repo, err := h.mayCreateRobots(r, v, r.URL.Query().Get("name"))
	if err != nil {
		return err
	}
	last := repo[strings.LastIndexByte(repo, '/')+1:]
	f := pullSecretForm{Repo: repo, Robot: "pull-" + last, Namespace: "default", Secret: "berth-pull-" + last,
		Expires: expiries[0].Value, Expiries: expiries}
	return h.render(w, r, "pullsecret", http.StatusOK, page{Title: "Pull " + repo + " from Kubernetes", Viewer: v, Data: f})
}

// createPullSecret makes the robot and shows its Secret, once.
func (h *Handler) createPullSecret(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := checkForm(r, v.CSRF()); err != nil {
		return err
	}
	repo, err := h.mayCreateRobots(r, v, r.PostForm.Get("name"))
	if err != nil {
		return err
	}
	f := pullSecretForm{Repo: repo, Robot: strings.TrimSpace(r.PostForm.Get("robot")), Namespace: strings.TrimSpace(r.PostForm.Get("namespace")),
		Secret: strings.TrimSpace(r.PostForm.Get("secret")), Expires: r.PostForm.Get("expires"), Expiries: expiries}
	again := func(msg string) error {
		f.Message = msg
		return h.render(w, r, "pullsecret", http.StatusBadRequest, page{Title: "Pull " + repo + " from Kubernetes", Viewer: v, Data: f})
	}
	var lifetime time.Duration
	switch {
	case !robotName.MatchString(f.Robot) || len(f.Robot) > 64:
		return again("The robot's name: lowercase letters and digits, separated by single . _ or -, at most 64 characters.")
	case !k8sName.MatchString(f.Namespace):
		return again("The Kubernetes namespace: lowercase letters, digits and -, at most 63 characters.")
	case !k8sName.MatchString(f.Secret):
		return again("The Secret's name: lowercase letters, digits and -, at most 63 characters.")
	case f.Expires != "never":
		if lifetime, err = auth.ParseExpiry(f.Expires); err != nil {
			return again("The expiry: " + err.Error())
		}
	}
	ns := auth.Namespace(repo)
	robot, password, err := h.opts.Accounts.CreateRobot(r.Context(), v.p, ns, f.Robot, []string{repo}, []string{auth.Pull}, lifetime)
	switch {
	case errors.Is(err, auth.ErrExists):
		return again("A robot named " + ns + "+" + f.Robot + " exists already; choose another name.")
	case errors.Is(err, auth.ErrInvalid):
		return again(err.Error())
	case err != nil:
		return err
	}
	host := r.Host
	cfg := &kube.DockerConfig{Auths: map[string]kube.AuthEntry{host: kube.NewEntry(robot.Name, password)}}
	secret, err := kube.PullSecret(f.Secret, f.Namespace, cfg)
	if err != nil {
		return err
	}
	yml, err := kube.Render(secret, "yaml")
	if err != nil {
		return err
	}
	res := pullSecretResult{Repo: repo, Robot: robot.Name, Password: password, Expires: "never", YAML: string(yml),
		Apply:        "kubectl apply -f - <<'EOF'\n" + string(yml) + "EOF",
		BerthCommand: fmt.Sprintf("berth secret create %s -n %s --robot --scope %s --expires %s --apply", f.Secret, f.Namespace, repo, f.Expires)}
	if !robot.Expires.IsZero() {
		res.Expires = robot.Expires.UTC().Format("2006-01-02 15:04 UTC")
	}
	if f.Expires == "never" {
		res.BerthCommand = fmt.Sprintf("berth secret create %s -n %s --robot --scope %s --apply", f.Secret, f.Namespace, repo)
	}
	return h.render(w, r, "pullsecret-made", http.StatusCreated, page{Title: "Pull secret for " + repo, Viewer: v, Data: res})
}
