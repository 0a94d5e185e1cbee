package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/chainbroker/chainbroker/config"
)

// The structs below declare the subset of the Kubernetes API these manifests
// use. Manifests are decoded with unknown fields refused, so a misspelt or
// misplaced field (readinessprobe, a probe under the pod spec) fails here
// like it would fail a schema check. A new field in a manifest needs its
// field here too.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type typeMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

// quantity is a Kubernetes resource quantity ("100m", "64Mi", 1).
type quantity string

var quantityRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$`)

func (q *quantity) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || !quantityRE.MatchString(n.Value) {
		return fmt.Errorf("line %d: not a resource quantity: %q", n.Line, n.Value)
	}
	*q = quantity(n.Value)
	return nil
}

// intOrString is a port given by number or by name.
type intOrString struct {
	IsInt bool
	Int   int
	Str   string
}

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want an int or a string", n.Line)
	}
	if n.Tag == "!!int" {
		v.IsInt = true
		return n.Decode(&v.Int)
	}
	v.Str = n.Value
	return nil
}

type kustomization struct {
	typeMeta  `yaml:",inline"`
	Namespace string   `yaml:"namespace"`
	Resources []string `yaml:"resources"`
	Images    []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

type deployment struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Replicas             int           `yaml:"replicas"`
		RevisionHistoryLimit int           `yaml:"revisionHistoryLimit"`
		Selector             labelSelector `yaml:"selector"`
		Strategy             struct {
			Type          string `yaml:"type"`
			RollingUpdate struct {
				MaxUnavailable intOrString `yaml:"maxUnavailable"`
				MaxSurge       intOrString `yaml:"maxSurge"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	AutomountServiceAccountToken  *bool              `yaml:"automountServiceAccountToken"`
	EnableServiceLinks            *bool              `yaml:"enableServiceLinks"`
	TerminationGracePeriodSeconds int                `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               podSecurityContext `yaml:"securityContext"`
	TopologySpreadConstraints     []spreadConstraint `yaml:"topologySpreadConstraints"`
	Containers                    []container        `yaml:"containers"`
	Volumes                       []volume           `yaml:"volumes"`
}

type podSecurityContext struct {
	RunAsNonRoot   *bool `yaml:"runAsNonRoot"`
	RunAsUser      *int  `yaml:"runAsUser"`
	RunAsGroup     *int  `yaml:"runAsGroup"`
	FSGroup        *int  `yaml:"fsGroup"`
	SeccompProfile struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type spreadConstraint struct {
	MaxSkew           int           `yaml:"maxSkew"`
	TopologyKey       string        `yaml:"topologyKey"`
	WhenUnsatisfiable string        `yaml:"whenUnsatisfiable"`
	LabelSelector     labelSelector `yaml:"labelSelector"`
}

type container struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	ImagePullPolicy string   `yaml:"imagePullPolicy"`
	Args            []string `yaml:"args"`
	Ports           []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
			ResourceFieldRef *struct {
				Resource string `yaml:"resource"`
			} `yaml:"resourceFieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Resources struct {
		Requests map[string]quantity `yaml:"requests"`
		Limits   map[string]quantity `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		RunAsUser                *int  `yaml:"runAsUser"`
		RunAsGroup               *int  `yaml:"runAsGroup"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Privileged               *bool `yaml:"privileged"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	GRPC *struct {
		Port    int    `yaml:"port"`
		Service string `yaml:"service"`
	} `yaml:"grpc"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string `yaml:"name"`
		Items []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"configMap"`
}

type service struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Type     string            `yaml:"type"`
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name        string      `yaml:"name"`
			Port        int         `yaml:"port"`
			TargetPort  intOrString `yaml:"targetPort"`
			Protocol    string      `yaml:"protocol"`
			AppProtocol string      `yaml:"appProtocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type configMap struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta        `yaml:"metadata"`
	Data     map[string]string `yaml:"data"`
}

type secret struct {
	typeMeta   `yaml:",inline"`
	Metadata   objectMeta        `yaml:"metadata"`
	Type       string            `yaml:"type"`
	StringData map[string]string `yaml:"stringData"`
}

type podDisruptionBudget struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		MinAvailable               intOrString   `yaml:"minAvailable"`
		Selector                   labelSelector `yaml:"selector"`
		UnhealthyPodEvictionPolicy string        `yaml:"unhealthyPodEvictionPolicy"`
	} `yaml:"spec"`
}

// wantAPIVersion is the API version each kind must use.
var wantAPIVersion = map[string]string{
	"Deployment":          "apps/v1",
	"Service":             "v1",
	"ConfigMap":           "v1",
	"Secret":              "v1",
	"PodDisruptionBudget": "policy/v1",
}

// manifests is every object of the kustomization, decoded strictly.
type manifests struct {
	deployment deployment
	service    service
	configMap  configMap
	secret     secret
	pdb        podDisruptionBudget
}

// decodeStrict decodes one YAML document into v, refusing unknown fields.
func decodeStrict(doc []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// documents splits a YAML stream into its non-empty documents.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs [][]byte
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(n.Content) == 0 {
			continue
		}
		out, err := yaml.Marshal(&n)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, out)
	}
}

func loadKustomization(t *testing.T) kustomization {
	t.Helper()
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := decodeStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: apiVersion %q kind %q", k.APIVersion, k.Kind)
	}
	return k
}

// load decodes every resource of the kustomization, one object of each kind.
func load(t *testing.T) *manifests {
	t.Helper()
	k := loadKustomization(t)
	m := &manifests{}
	seen := map[string]string{} // kind -> file
	for _, file := range k.Resources {
		for _, doc := range documents(t, file) {
			var tm struct {
				typeMeta `yaml:",inline"`
			}
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			want, ok := wantAPIVersion[tm.Kind]
			if !ok {
				t.Fatalf("%s: unexpected kind %q", file, tm.Kind)
			}
			if tm.APIVersion != want {
				t.Errorf("%s: %s has apiVersion %q, want %q", file, tm.Kind, tm.APIVersion, want)
			}
			if prev, dup := seen[tm.Kind]; dup {
				t.Fatalf("%s: a second %s (first in %s)", file, tm.Kind, prev)
			}
			seen[tm.Kind] = file
			var target any
			switch tm.Kind {
			case "Deployment":
				target = &m.deployment
			case "Service":
				target = &m.service
			case "ConfigMap":
				target = &m.configMap
			case "Secret":
				target = &m.secret
			case "PodDisruptionBudget":
				target = &m.pdb
			}
			if err := decodeStrict(doc, target); err != nil {
				t.Fatalf("%s: %s: %v", file, tm.Kind, err)
			}
		}
	}
	for kind := range wantAPIVersion {
		if _, ok := seen[kind]; !ok {
			t.Errorf("no %s among the kustomization's resources", kind)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	k := loadKustomization(t)
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		if f != "kustomization.yaml" {
			want = append(want, f)
		}
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, want every manifest of the directory %v", got, want)
	}
	if len(k.Images) != 1 || k.Images[0].Name != load(t).deployment.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("kustomization images %+v must override the Deployment's image", k.Images)
	}
}

func TestManifestsMetadata(t *testing.T) {
	m := load(t)
	for _, meta := range []objectMeta{m.deployment.Metadata, m.service.Metadata, m.configMap.Metadata, m.secret.Metadata, m.pdb.Metadata} {
		if meta.Name == "" {
			t.Error("an object has no name")
		}
		if meta.Namespace != "" {
			t.Errorf("%s: hard-coded namespace %q (set it in kustomization.yaml)", meta.Name, meta.Namespace)
		}
		if meta.Labels["app.kubernetes.io/name"] != "chainbroker" {
			t.Errorf("%s: labels %v lack app.kubernetes.io/name: chainbroker", meta.Name, meta.Labels)
		}
	}
}

// selects reports whether selector (non-empty) matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestSelectorsMatch(t *testing.T) {
	m := load(t)
	d := m.deployment.Spec
	podLabels := d.Template.Metadata.Labels
	if !selects(d.Selector.MatchLabels, podLabels) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", d.Selector.MatchLabels, podLabels)
	}
	if !maps.Equal(m.service.Spec.Selector, d.Selector.MatchLabels) {
		t.Errorf("Service selector %v, want the Deployment's %v", m.service.Spec.Selector, d.Selector.MatchLabels)
	}
	if !maps.Equal(m.pdb.Spec.Selector.MatchLabels, d.Selector.MatchLabels) {
		t.Errorf("PodDisruptionBudget selector %v, want the Deployment's %v", m.pdb.Spec.Selector.MatchLabels, d.Selector.MatchLabels)
	}
	for _, c := range d.Template.Spec.TopologySpreadConstraints {
		if !maps.Equal(c.LabelSelector.MatchLabels, d.Selector.MatchLabels) {
			t.Errorf("topology spread selector %v, want the Deployment's %v", c.LabelSelector.MatchLabels, d.Selector.MatchLabels)
		}
	}
}

func TestDeployment(t *testing.T) {
	m := load(t)
	d := m.deployment.Spec
	pod := d.Template.Spec
	if d.Replicas != 2 {
		t.Errorf("replicas = %d, want 2", d.Replicas)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken should be false: chainbroker does not use the Kubernetes API")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	t.Run("non-root and locked down", func(t *testing.T) {
		psc, sc := pod.SecurityContext, c.SecurityContext
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			t.Error("the container does not set runAsNonRoot: true (nor inherits it from the pod)")
		}
		for _, uid := range []*int{psc.RunAsUser, sc.RunAsUser} {
			if uid != nil && *uid == 0 {
				t.Error("runAsUser: 0")
			}
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation must be false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Error("privileged container")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("readOnlyRootFilesystem must be true")
		}
		if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("capabilities drop %v add %v, want drop [ALL], add none", sc.Capabilities.Drop, sc.Capabilities.Add)
		}
		if psc.SeccompProfile.Type != "RuntimeDefault" {
			t.Errorf("seccompProfile %q, want RuntimeDefault", psc.SeccompProfile.Type)
		}
	})

	t.Run("resources", func(t *testing.T) {
		for _, r := range []string{"cpu", "memory"} {
			if c.Resources.Requests[r] == "" {
				t.Errorf("no %s request", r)
			}
		}
		if c.Resources.Limits["memory"] == "" {
			t.Error("no memory limit")
		}
		if c.Resources.Limits["cpu"] == "" {
			t.Error("no cpu limit")
		}
	})

	t.Run("probes use gRPC health on 9090", func(t *testing.T) {
		for name, p := range map[string]*probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
			if p == nil {
				t.Errorf("no %s probe", name)
				continue
			}
			if p.GRPC == nil || p.GRPC.Port != 9090 {
				t.Errorf("%s probe %+v, want grpc on port 9090", name, p)
			}
		}
		if s := c.ReadinessProbe.GRPC.Service; s != "" && s != "chainbroker.v1.ChainService" && s != "chainbroker.v1.AuditService" {
			t.Errorf("readiness probe asks for health of %q, which the server does not report", s)
		}
	})

	t.Run("ports", func(t *testing.T) {
		ports := map[string]int{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if ports["http"] != 8080 || ports["grpc"] != 9090 {
			t.Errorf("container ports %v, want http 8080 and grpc 9090", ports)
		}
	})

	t.Run("config mounted from the ConfigMap", func(t *testing.T) {
		if !slices.Equal(c.Args, []string{"serve", "--config", "/etc/chainbroker/config.yaml"}) {
			t.Errorf("args %v, want serve --config /etc/chainbroker/config.yaml", c.Args)
		}
		var vol *volume
		for i := range pod.Volumes {
			if pod.Volumes[i].ConfigMap != nil && pod.Volumes[i].ConfigMap.Name == m.configMap.Metadata.Name {
				vol = &pod.Volumes[i]
			}
		}
		if vol == nil {
			t.Fatalf("no volume from ConfigMap %q", m.configMap.Metadata.Name)
		}
		if len(vol.ConfigMap.Items) != 1 || vol.ConfigMap.Items[0].Key != "config.yaml" || vol.ConfigMap.Items[0].Path != "config.yaml" {
			t.Errorf("ConfigMap volume items %+v, want config.yaml -> config.yaml", vol.ConfigMap.Items)
		}
		mounted := false
		for _, vm := range c.VolumeMounts {
			if vm.Name == vol.Name && vm.MountPath == "/etc/chainbroker" && vm.ReadOnly {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("volume %q is not mounted read-only at /etc/chainbroker", vol.Name)
		}
	})
}

func TestService(t *testing.T) {
	m := load(t)
	s := m.service.Spec
	containerPorts := map[string]int{}
	for _, p := range m.deployment.Spec.Template.Spec.Containers[0].Ports {
		containerPorts[p.Name] = p.ContainerPort
	}
	got := map[string]int{}
	for _, p := range s.Ports {
		got[p.Name] = p.Port
		target := p.TargetPort.Int
		if !p.TargetPort.IsInt {
			var ok bool
			if target, ok = containerPorts[p.TargetPort.Str]; !ok {
				t.Errorf("Service port %s: targetPort %q names no container port", p.Name, p.TargetPort.Str)
			}
		}
		if target != p.Port {
			t.Errorf("Service port %s: %d forwards to container port %d", p.Name, p.Port, target)
		}
	}
	if got["http"] != 8080 || got["grpc"] != 9090 || len(got) != 2 {
		t.Errorf("Service ports %v, want http 8080 and grpc 9090", got)
	}
}

func TestPodDisruptionBudget(t *testing.T) {
	m := load(t)
	if ma := m.pdb.Spec.MinAvailable; !ma.IsInt || ma.Int != 1 {
		t.Errorf("minAvailable %+v, want 1", ma)
	}
	if m.pdb.Spec.MinAvailable.Int >= m.deployment.Spec.Replicas {
		t.Errorf("minAvailable %d with %d replicas would block every drain", m.pdb.Spec.MinAvailable.Int, m.deployment.Spec.Replicas)
	}
}

// TestConfigMapConfig parses the embedded configuration with the broker's own
// parser and checks it against the Deployment and the Secret.
func TestConfigMapConfig(t *testing.T) {
	m := load(t)
	raw, ok := m.configMap.Data["config.yaml"]
	if !ok {
		t.Fatal("ConfigMap has no config.yaml")
	}
	cfg, err := config.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("the ConfigMap's config.yaml does not parse: %v", err)
	}
	if cfg.Listen.GRPC != "0.0.0.0:9090" || cfg.Listen.HTTP != "0.0.0.0:8080" {
		t.Errorf("listen %+v: must be 0.0.0.0:9090 and 0.0.0.0:8080, or nothing outside the pod reaches them", cfg.Listen)
	}
	if cfg.Store.Backend != "redis" {
		t.Errorf("store backend %q: several replicas must share replay markers (redis)", cfg.Store.Backend)
	}
	if cfg.Callers.AllowAnonymous {
		t.Error("callers.allow_anonymous: a cluster deployment must authenticate callers")
	}
	if len(cfg.Policy) == 0 {
		t.Error("no policy: every chain would be refused")
	}
	// The kubelet's grpc probes speak plaintext only.
	if cfg.TLS.CertFile != "" {
		c := m.deployment.Spec.Template.Spec.Containers[0]
		for _, p := range []*probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p != nil && p.GRPC != nil {
				t.Error("tls is configured but a probe uses grpc, which cannot speak TLS")
			}
		}
	}
	if len(cfg.Domains) < 2 || len(cfg.Chains) < 1 {
		t.Errorf("want two domains and a chain, got %d and %d", len(cfg.Domains), len(cfg.Chains))
	}
	for _, d := range cfg.Domains {
		if !strings.Contains(d.Issuer, "/realms/") {
			t.Errorf("domain %s: issuer %q is not a Keycloak realm", d.Name, d.Issuer)
		}
	}
	if grace := m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds; grace > 0 && float64(grace) <= cfg.Listen.ShutdownTimeout.D().Seconds() {
		t.Errorf("terminationGracePeriodSeconds %d is not above listen.shutdown_timeout %s", grace, cfg.Listen.ShutdownTimeout.D())
	}

	// Every *_env the config names is set by the Deployment from a key the
	// Secret has.
	var envNames []string
	for _, d := range cfg.Domains {
		if d.Client.SecretEnv != "" {
			envNames = append(envNames, d.Client.SecretEnv)
		}
		if d.Client.SecretFile != "" || d.Client.PrivateKeyFile != "" {
			t.Errorf("domain %s reads a file the Deployment does not mount", d.Name)
		}
	}
	if cfg.Store.Redis.PasswordEnv != "" {
		envNames = append(envNames, cfg.Store.Redis.PasswordEnv)
	}
	if len(envNames) == 0 {
		t.Fatal("the config names no secret")
	}
	fromSecret := map[string]string{} // env name -> Secret key
	for _, e := range m.deployment.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			if e.ValueFrom.SecretKeyRef.Name != m.secret.Metadata.Name {
				t.Errorf("env %s comes from Secret %q, want %q", e.Name, e.ValueFrom.SecretKeyRef.Name, m.secret.Metadata.Name)
			}
			fromSecret[e.Name] = e.ValueFrom.SecretKeyRef.Key
		}
	}
	for _, name := range envNames {
		key, ok := fromSecret[name]
		if !ok {
			t.Errorf("the config reads $%s, which the Deployment does not set from the Secret", name)
			continue
		}
		if _, ok := m.secret.StringData[key]; !ok {
			t.Errorf("$%s comes from Secret key %q, which the example Secret lacks", name, key)
		}
	}
}

// TestSecretIsAPlaceholder keeps real secrets out of the repository.
func TestSecretIsAPlaceholder(t *testing.T) {
	m := load(t)
	if m.secret.Type != "Opaque" {
		t.Errorf("Secret type %q, want Opaque", m.secret.Type)
	}
	if len(m.secret.StringData) == 0 {
		t.Fatal("the example Secret has no stringData")
	}
	for k, v := range m.secret.StringData {
		if !strings.HasPrefix(v, "REPLACE-ME") {
			t.Errorf("Secret key %s: value is not a REPLACE-ME placeholder", k)
		}
	}
	b, err := os.ReadFile("secret.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("EXAMPLE ONLY")) {
		t.Error("secret.yaml does not say it is an example")
	}
}
