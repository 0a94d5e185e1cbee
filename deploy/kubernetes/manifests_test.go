package kubernetes

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8sjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/chainbroker/chainbroker/config"
)

// Every manifest is decoded into the Kubernetes API's own types (k8s.io/api)
// the way the API server decodes it: YAML to JSON, then a case-sensitive
// JSON decoder (sigs.k8s.io/json, as k8s.io/apimachinery uses) refusing
// unknown and duplicate fields. A misspelt or misplaced field
// (readinessprobe, a probe under the pod spec) or a bad quantity fails here
// as it would fail `kubectl apply --validate=strict`.

type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Namespace  string   `yaml:"namespace"`
	Resources  []string `yaml:"resources"`
	Images     []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

// wantAPIVersion is the API version each kind must use.
var wantAPIVersion = map[string]string{
	"Deployment":              "apps/v1",
	"Service":                 "v1",
	"ConfigMap":               "v1",
	"Secret":                  "v1",
	"PodDisruptionBudget":     "policy/v1",
	"NetworkPolicy":           "networking.k8s.io/v1",
	"HorizontalPodAutoscaler": "autoscaling/v2",
}

// manifests is every object of the kustomization, decoded strictly.
type manifests struct {
	deployment    appsv1.Deployment
	service       corev1.Service
	configMap     corev1.ConfigMap
	secret        corev1.Secret
	pdb           policyv1.PodDisruptionBudget
	networkPolicy networkingv1.NetworkPolicy
	hpa           autoscalingv2.HorizontalPodAutoscaler
}

// decodeStrict decodes one YAML document into a Kubernetes API object as
// the API server's strict field validation does.
func decodeStrict(doc []byte, v any) error {
	js, err := sigsyaml.YAMLToJSONStrict(doc) // duplicate keys refused
	if err != nil {
		return err
	}
	strict, err := k8sjson.UnmarshalStrict(js, v, k8sjson.DisallowUnknownFields, k8sjson.DisallowDuplicateFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
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
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&k); err != nil {
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
			var tm metav1.TypeMeta
			if err := sigsyaml.Unmarshal(doc, &tm); err != nil {
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
			case "NetworkPolicy":
				target = &m.networkPolicy
			case "HorizontalPodAutoscaler":
				target = &m.hpa
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
	for _, meta := range []metav1.ObjectMeta{m.deployment.ObjectMeta, m.service.ObjectMeta, m.configMap.ObjectMeta,
		m.secret.ObjectMeta, m.pdb.ObjectMeta, m.networkPolicy.ObjectMeta, m.hpa.ObjectMeta} {
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
	podLabels := d.Template.Labels
	if d.Selector == nil || !selects(d.Selector.MatchLabels, podLabels) {
		t.Fatalf("Deployment selector %v does not match its pod labels %v", d.Selector, podLabels)
	}
	if !maps.Equal(m.service.Spec.Selector, d.Selector.MatchLabels) {
		t.Errorf("Service selector %v, want the Deployment's %v", m.service.Spec.Selector, d.Selector.MatchLabels)
	}
	if m.pdb.Spec.Selector == nil || !maps.Equal(m.pdb.Spec.Selector.MatchLabels, d.Selector.MatchLabels) {
		t.Errorf("PodDisruptionBudget selector %v, want the Deployment's %v", m.pdb.Spec.Selector, d.Selector.MatchLabels)
	}
	if !maps.Equal(m.networkPolicy.Spec.PodSelector.MatchLabels, d.Selector.MatchLabels) {
		t.Errorf("NetworkPolicy podSelector %v, want the Deployment's %v", m.networkPolicy.Spec.PodSelector.MatchLabels, d.Selector.MatchLabels)
	}
	for _, c := range d.Template.Spec.TopologySpreadConstraints {
		if c.LabelSelector == nil || !maps.Equal(c.LabelSelector.MatchLabels, d.Selector.MatchLabels) {
			t.Errorf("topology spread selector %v, want the Deployment's %v", c.LabelSelector, d.Selector.MatchLabels)
		}
	}
}

// brokerConfig is the chainbroker configuration the ConfigMap carries.
func brokerConfig(t *testing.T, m *manifests) *config.File {
	t.Helper()
	raw, ok := m.configMap.Data["config.yaml"]
	if !ok {
		t.Fatal("ConfigMap has no config.yaml")
	}
	cfg, err := config.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("the ConfigMap's config.yaml does not parse: %v", err)
	}
	return cfg
}

// containerPorts are the broker container's ports by name.
func containerPorts(m *manifests) map[string]int32 {
	out := map[string]int32{}
	for _, p := range m.deployment.Spec.Template.Spec.Containers[0].Ports {
		out[p.Name] = p.ContainerPort
	}
	return out
}

// portNumber resolves a port given by number or by container port name.
func portNumber(t *testing.T, m *manifests, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	n, ok := containerPorts(m)[p.StrVal]
	if !ok {
		t.Errorf("port %q names no container port", p.StrVal)
	}
	return n
}

// addrPort is the port of a host:port.
func addrPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return int32(n)
}

func TestDeployment(t *testing.T) {
	m := load(t)
	d := m.deployment.Spec
	pod := d.Template.Spec
	if d.Replicas != nil {
		t.Errorf("replicas = %d: the HorizontalPodAutoscaler owns the count; a replicas field resets it on every apply", *d.Replicas)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken should be false: chainbroker does not use the Kubernetes API")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	cfg := brokerConfig(t, m)

	t.Run("non-root and locked down", func(t *testing.T) {
		psc, sc := pod.SecurityContext, c.SecurityContext
		if psc == nil || sc == nil {
			t.Fatal("no pod or container securityContext")
		}
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			t.Error("the container does not set runAsNonRoot: true (nor inherits it from the pod)")
		}
		for _, uid := range []*int64{psc.RunAsUser, sc.RunAsUser} {
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
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("capabilities %+v, want drop [ALL], add none", sc.Capabilities)
		}
		if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("seccompProfile %+v, want RuntimeDefault", psc.SeccompProfile)
		}
	})

	t.Run("resources", func(t *testing.T) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
				t.Errorf("no %s request (the HorizontalPodAutoscaler measures CPU against it)", r)
			}
			if q, ok := c.Resources.Limits[r]; !ok || q.IsZero() {
				t.Errorf("no %s limit", r)
			}
		}
	})

	// docs/design.md §5: liveness says the process is alive (it stays up while
	// Redis or a domain is down); readiness follows the store and keys.
	t.Run("probes: liveness on /healthz, readiness on /readyz, on the admin listener", func(t *testing.T) {
		if cfg.Listen.Admin == "" {
			t.Fatal("the config sets no listen.admin: the probes' endpoints would be on the API port")
		}
		adminPort := addrPort(t, cfg.Listen.Admin)
		want := map[string]struct {
			p    *corev1.Probe
			path string
		}{
			"startup": {c.StartupProbe, "/healthz"}, "liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, "/readyz"},
		}
		for name, w := range want {
			if w.p == nil {
				t.Errorf("no %s probe", name)
				continue
			}
			g := w.p.HTTPGet
			if g == nil || g.Path != w.path || portNumber(t, m, g.Port) != adminPort || (g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP) {
				t.Errorf("%s probe %+v, want HTTP GET %s on the admin port %d", name, w.p.ProbeHandler, w.path, adminPort)
			}
		}
		if p := c.ReadinessProbe; p != nil && time.Duration(p.FailureThreshold*p.PeriodSeconds)*time.Second >= cfg.Listen.ShutdownDelay.D() {
			t.Errorf("readiness fails after %ds, not within listen.shutdown_delay %s: the pod would still get calls when its listeners close",
				p.FailureThreshold*p.PeriodSeconds, cfg.Listen.ShutdownDelay.D())
		}
	})

	t.Run("ports", func(t *testing.T) {
		ports := containerPorts(m)
		if ports["http"] != 8080 || ports["grpc"] != 9090 || ports["admin"] != addrPort(t, cfg.Listen.Admin) {
			t.Errorf("container ports %v, want http 8080, grpc 9090 and admin at listen.admin %s", ports, cfg.Listen.Admin)
		}
	})

	t.Run("metrics scraped on the admin listener", func(t *testing.T) {
		a := d.Template.Annotations
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" || a["prometheus.io/port"] != strconv.Itoa(int(addrPort(t, cfg.Listen.Admin))) {
			t.Errorf("pod annotations %v, want prometheus.io/scrape true, path /metrics, port of listen.admin", a)
		}
	})

	t.Run("config mounted from the ConfigMap, listening on the pod's addresses", func(t *testing.T) {
		if !slices.Equal(c.Args, imageCMD(t)) {
			t.Errorf("args %q, want the image's CMD %q", c.Args, imageCMD(t))
		}
		var vol *corev1.Volume
		for i := range pod.Volumes {
			if cm := pod.Volumes[i].ConfigMap; cm != nil && cm.Name == m.configMap.Name {
				vol = &pod.Volumes[i]
			}
		}
		if vol == nil {
			t.Fatalf("no volume from ConfigMap %q", m.configMap.Name)
		}
		if items := vol.ConfigMap.Items; len(items) != 1 || items[0].Key != "config.yaml" || items[0].Path != "config.yaml" {
			t.Errorf("ConfigMap volume items %+v, want config.yaml -> config.yaml", items)
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

// imageCMD is the Dockerfile's CMD.
func imageCMD(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "CMD "); ok {
			var cmd []string
			if err := sigsyaml.Unmarshal([]byte(rest), &cmd); err != nil {
				t.Fatalf("Dockerfile CMD %s: %v", rest, err)
			}
			return cmd
		}
	}
	t.Fatal("the Dockerfile has no CMD")
	return nil
}

// A config mounted into the image that forgets 0.0.0.0 must not leave the
// broker on the container's loopback: the image's CMD sets the listen
// addresses by flag.
func TestImageListensOnAllInterfaces(t *testing.T) {
	cmd := imageCMD(t)
	flags := map[string]string{}
	for i := 0; i+1 < len(cmd); i++ {
		if strings.HasPrefix(cmd[i], "--") {
			flags[cmd[i]] = cmd[i+1]
		}
	}
	if cmd[0] != "serve" || flags["--config"] != "/etc/chainbroker/config.yaml" ||
		flags["--grpc-addr"] != "0.0.0.0:9090" || flags["--http-addr"] != "0.0.0.0:8080" {
		t.Errorf("Dockerfile CMD %q, want serve --config /etc/chainbroker/config.yaml --grpc-addr 0.0.0.0:9090 --http-addr 0.0.0.0:8080", cmd)
	}
}

func TestService(t *testing.T) {
	m := load(t)
	got := map[string]int32{}
	for _, p := range m.service.Spec.Ports {
		got[p.Name] = p.Port
		if target := portNumber(t, m, p.TargetPort); target != p.Port {
			t.Errorf("Service port %s: %d forwards to container port %d", p.Name, p.Port, target)
		}
	}
	// The admin listener stays out of the Service: Prometheus scrapes the
	// pods, the kubelet probes them.
	if got["http"] != 8080 || got["grpc"] != 9090 || len(got) != 2 {
		t.Errorf("Service ports %v, want http 8080 and grpc 9090 only", got)
	}
}

func TestPodDisruptionBudget(t *testing.T) {
	m := load(t)
	ma := m.pdb.Spec.MinAvailable
	if ma == nil || ma.Type != intstr.Int || ma.IntVal != 1 {
		t.Fatalf("minAvailable %v, want 1", ma)
	}
	if m.hpa.Spec.MinReplicas == nil || ma.IntVal >= *m.hpa.Spec.MinReplicas {
		t.Errorf("minAvailable %d with at least %v replicas would block every drain", ma.IntVal, m.hpa.Spec.MinReplicas)
	}
}

func TestHorizontalPodAutoscaler(t *testing.T) {
	m := load(t)
	s := m.hpa.Spec
	if ref := s.ScaleTargetRef; ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != m.deployment.Name {
		t.Errorf("scaleTargetRef %+v, want the Deployment %s", ref, m.deployment.Name)
	}
	if s.MinReplicas == nil || *s.MinReplicas < 2 || s.MaxReplicas < *s.MinReplicas {
		t.Errorf("replicas %v..%d, want at least 2, max above min", s.MinReplicas, s.MaxReplicas)
	}
	cpu := false
	for _, mt := range s.Metrics {
		if mt.Type == autoscalingv2.ResourceMetricSourceType && mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU &&
			mt.Resource.Target.Type == autoscalingv2.UtilizationMetricType && mt.Resource.Target.AverageUtilization != nil {
			cpu = true
		}
	}
	if !cpu {
		t.Errorf("metrics %+v, want CPU utilization", s.Metrics)
	}
}

// The API ports admit only labelled callers, the admin port only the
// monitoring namespace; nothing is open to every pod.
func TestNetworkPolicy(t *testing.T) {
	m := load(t)
	np := m.networkPolicy.Spec
	if !slices.Contains(np.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("policyTypes %v lack Ingress", np.PolicyTypes)
	}
	admitted := map[int32]bool{}
	for _, rule := range np.Ingress {
		if len(rule.From) == 0 {
			t.Errorf("an ingress rule without from admits every source: %+v", rule)
		}
		for _, f := range rule.From {
			if f.PodSelector == nil && f.NamespaceSelector == nil && f.IPBlock == nil {
				t.Errorf("an empty peer admits every source: %+v", rule)
			}
			if f.NamespaceSelector != nil && len(f.NamespaceSelector.MatchLabels) == 0 && len(f.NamespaceSelector.MatchExpressions) == 0 &&
				(f.PodSelector == nil || len(f.PodSelector.MatchLabels) == 0 && len(f.PodSelector.MatchExpressions) == 0) {
				t.Errorf("a peer admits every pod of every namespace: %+v", f)
			}
		}
		if len(rule.Ports) == 0 {
			t.Errorf("an ingress rule without ports admits every port: %+v", rule)
		}
		for _, p := range rule.Ports {
			if p.Port == nil {
				t.Errorf("a port entry without a port: %+v", rule)
				continue
			}
			admitted[portNumber(t, m, *p.Port)] = true
		}
	}
	ports := containerPorts(m)
	for _, name := range []string{"http", "grpc", "admin"} {
		if !admitted[ports[name]] {
			t.Errorf("port %s (%d) is admitted by no rule", name, ports[name])
		}
	}
}

// TestConfigMapConfig parses the embedded configuration with the broker's own
// parser and checks it against the Deployment and the Secret.
func TestConfigMapConfig(t *testing.T) {
	m := load(t)
	cfg := brokerConfig(t, m)
	if cfg.Listen.GRPC != "0.0.0.0:9090" || cfg.Listen.HTTP != "0.0.0.0:8080" {
		t.Errorf("listen %+v: must be 0.0.0.0:9090 and 0.0.0.0:8080, or nothing outside the pod reaches them", cfg.Listen)
	}
	if host, _, _ := net.SplitHostPort(cfg.Listen.Admin); host != "0.0.0.0" {
		t.Errorf("listen.admin %q: must be on 0.0.0.0, or the kubelet and Prometheus cannot reach it", cfg.Listen.Admin)
	}
	if cfg.Listen.ShutdownDelay.D() <= 0 {
		t.Error("listen.shutdown_delay is 0: the pod's listeners would close before the endpoints controller removes it")
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
	if len(cfg.Domains) < 2 || len(cfg.Chains) < 1 {
		t.Errorf("want two domains and a chain, got %d and %d", len(cfg.Domains), len(cfg.Chains))
	}
	for _, d := range cfg.Domains {
		if !strings.Contains(d.Issuer, "/realms/") {
			t.Errorf("domain %s: issuer %q is not a Keycloak realm", d.Name, d.Issuer)
		}
	}
	grace := m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
	if need := cfg.Listen.ShutdownDelay.D() + cfg.Listen.ShutdownTimeout.D(); grace == nil || time.Duration(*grace)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds %v is not above listen.shutdown_delay + listen.shutdown_timeout (%s)", grace, need)
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
			if e.ValueFrom.SecretKeyRef.Name != m.secret.Name {
				t.Errorf("env %s comes from Secret %q, want %q", e.Name, e.ValueFrom.SecretKeyRef.Name, m.secret.Name)
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
	if m.secret.Type != corev1.SecretTypeOpaque {
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

// The strict decoding refuses what the API server's strict validation
// refuses: each mutation of the shipped Deployment must fail to decode.
func TestStrictDecodingRefusesBadFields(t *testing.T) {
	b, err := os.ReadFile("deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	orig := string(b)
	var d appsv1.Deployment
	if err := decodeStrict(b, &d); err != nil {
		t.Fatalf("the shipped Deployment: %v", err)
	}
	tests := []struct{ name, from, to string }{
		{"misspelt field (case)", "readinessProbe:", "readinessprobe:"},
		{"unknown field", "failureThreshold: 3", "failureTreshold: 3"},
		{"duplicate field", "          startupProbe:", "          livenessProbe:"},
		{"bad quantity", "memory: 256Mi", "memory: 256MB!"},
		{"wrong type", "periodSeconds: 10", "periodSeconds: ten"},
		{"field at the wrong level", "      automountServiceAccountToken: false", "      automountServiceAccountToken: false\n      periodSeconds: 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(orig, tt.from) {
				t.Fatalf("deployment.yaml has no %q to mutate", tt.from)
			}
			bad := strings.Replace(orig, tt.from, tt.to, 1)
			var d appsv1.Deployment
			if err := decodeStrict([]byte(bad), &d); err == nil {
				t.Errorf("%q -> %q decoded without error", tt.from, tt.to)
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
}
