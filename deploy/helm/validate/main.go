// Command validate checks the output of `helm template` for the egress chart.
//
// It owns three jobs, all offline (no cluster, no network):
//
//  1. Strict decoding: every rendered document is decoded by apiVersion/kind into
//     the typed Kubernetes struct (k8s.io/api, and the prometheus-operator types
//     for ServiceMonitor and PrometheusRule), case-sensitively, with unknown and
//     duplicate fields rejected. An unknown kind is an error.
//  2. Cross-object checks the API server would not do but the chart relies on:
//     selectors select the pods, named ports exist with the protocol that
//     uses them, the chart's own mounted ConfigMaps are rendered, Secrets are
//     projected read-only with private files not world-readable, the pod is
//     non-root and read-only, probes hit the admin port.
//  3. With -extract DIR, the Deployment's projected config volume is written to
//     DIR exactly as the kubelet would lay it out (key -> path), so that
//     `egress validate DIR` can check the HCL the chart produced. Files from
//     objects the chart does not render (existing Secrets and ConfigMaps the
//     operator provides) cannot be written; their paths are printed, one per
//     line, as "validate: external PATH", for the caller to fill with
//     placeholders.
//
// Usage:
//
//	validate [-extract DIR] FILE...   (FILE "-" reads standard input)
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// ErrInvalid is returned when at least one rendered object fails a check.
var ErrInvalid = errors.New("rendered chart is invalid")

// maxConfigMapBytes is the API server's limit on a ConfigMap's data.
const maxConfigMapBytes = 1 << 20

// object is one decoded document with where it came from.
type object struct {
	source string // file and document index, for messages
	kind   string
	meta   *metav1.ObjectMeta
	typed  any
}

// newTyped maps apiVersion/kind to an empty typed struct and its ObjectMeta.
func newTyped(apiVersion, kind string) (any, *metav1.ObjectMeta, bool) {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		o := &corev1.ConfigMap{}
		return o, &o.ObjectMeta, true
	case "v1/Service":
		o := &corev1.Service{}
		return o, &o.ObjectMeta, true
	case "v1/ServiceAccount":
		o := &corev1.ServiceAccount{}
		return o, &o.ObjectMeta, true
	case "v1/Pod":
		o := &corev1.Pod{}
		return o, &o.ObjectMeta, true
	case "apps/v1/Deployment":
		o := &appsv1.Deployment{}
		return o, &o.ObjectMeta, true
	case "policy/v1/PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		return o, &o.ObjectMeta, true
	case "autoscaling/v2/HorizontalPodAutoscaler":
		o := &autoscalingv2.HorizontalPodAutoscaler{}
		return o, &o.ObjectMeta, true
	case "networking.k8s.io/v1/NetworkPolicy":
		o := &networkingv1.NetworkPolicy{}
		return o, &o.ObjectMeta, true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		o := &monitoringv1.ServiceMonitor{}
		return o, &o.ObjectMeta, true
	case "monitoring.coreos.com/v1/PrometheusRule":
		o := &monitoringv1.PrometheusRule{}
		return o, &o.ObjectMeta, true
	}
	return nil, nil, false
}

// checker accumulates problems instead of stopping at the first.
type checker struct {
	problems []string
}

func (c *checker) addf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

func main() {
	extract := flag.String("extract", "", "write the Deployment's config volume (HCL and lists) into this directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: validate [-extract DIR] FILE... (FILE - reads stdin)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	c := &checker{}
	var objs []object
	for _, name := range flag.Args() {
		objs = append(objs, c.decodeFile(name)...)
	}
	c.checkAll(objs)
	if *extract != "" && len(c.problems) == 0 {
		if err := extractConfig(objs, *extract); err != nil {
			c.addf("extract: %v", err)
		}
	}
	for _, p := range c.problems {
		fmt.Fprintln(os.Stderr, "validate:", p)
	}
	if len(c.problems) > 0 {
		fmt.Fprintf(os.Stderr, "validate: %v: %d problem(s) in %d object(s)\n", ErrInvalid, len(c.problems), len(objs))
		os.Exit(1)
	}
	fmt.Printf("validate: %d object(s) ok\n", len(objs))
}

// decodeFile splits a multi-document YAML stream and decodes each document.
func (c *checker) decodeFile(name string) []object {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			c.addf("%v", err)
			return nil
		}
		defer f.Close()
		r = f
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var objs []object
	for i := 0; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		src := fmt.Sprintf("%s#%d", name, i)
		if err != nil {
			c.addf("%s: reading: %v", src, err)
			break
		}
		if o, ok := c.decodeDoc(src, doc); ok {
			objs = append(objs, o)
		}
	}
	return objs
}

func (c *checker) decodeDoc(src string, doc []byte) (object, bool) {
	// YAMLToJSONStrict rejects duplicate keys in the YAML itself.
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		c.addf("%s: yaml: %v", src, err)
		return object{}, false
	}
	if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
		return object{}, false // a document holding only comments
	}
	var tm metav1.TypeMeta
	if err := k8sjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		c.addf("%s: %v", src, err)
		return object{}, false
	}
	typed, meta, ok := newTyped(tm.APIVersion, tm.Kind)
	if !ok {
		c.addf("%s: unsupported apiVersion/kind %q/%q", src, tm.APIVersion, tm.Kind)
		return object{}, false
	}
	strict, err := k8sjson.UnmarshalStrict(js, typed)
	if err != nil {
		c.addf("%s: %s: %v", src, tm.Kind, err)
		return object{}, false
	}
	for _, e := range strict {
		c.addf("%s: %s: %v", src, tm.Kind, e)
	}
	src = fmt.Sprintf("%s %s/%s", src, tm.Kind, meta.Name)
	return object{source: src, kind: tm.Kind, meta: meta, typed: typed}, true
}

// checkAll runs the per-object and cross-object checks.
func (c *checker) checkAll(objs []object) {
	var deploy *appsv1.Deployment
	cms := map[string]*corev1.ConfigMap{}
	svcs := map[string]*corev1.Service{}
	sas := map[string]bool{}
	seen := map[string]string{}
	for _, o := range objs {
		c.checkMeta(o)
		key := o.kind + "/" + o.meta.Name
		if prev, dup := seen[key]; dup {
			c.addf("%s: duplicate of %s", o.source, prev)
		}
		seen[key] = o.source
		switch t := o.typed.(type) {
		case *appsv1.Deployment:
			if deploy != nil {
				c.addf("%s: more than one Deployment", o.source)
			}
			deploy = t
		case *corev1.ConfigMap:
			cms[t.Name] = t
		case *corev1.Service:
			svcs[t.Name] = t
		case *corev1.ServiceAccount:
			sas[t.Name] = true
		}
	}
	if deploy == nil {
		c.addf("no Deployment rendered")
		return
	}
	podLabels := deploy.Spec.Template.Labels
	for _, o := range objs {
		switch t := o.typed.(type) {
		case *corev1.ConfigMap:
			c.checkConfigMap(o.source, t)
		case *appsv1.Deployment:
			c.checkDeployment(o.source, t, cms, sas)
		case *corev1.Pod:
			c.checkTestPod(o.source, t, cms, deploy.Name, podLabels)
		case *corev1.Service:
			c.checkService(o.source, t, deploy)
		case *policyv1.PodDisruptionBudget:
			c.checkSelects(o.source, "spec.selector", t.Spec.Selector, podLabels)
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := t.Spec.ScaleTargetRef
			if ref.Kind != "Deployment" || ref.Name != deploy.Name || ref.APIVersion != "apps/v1" {
				c.addf("%s: scaleTargetRef %s %s/%s is not the rendered Deployment", o.source, ref.APIVersion, ref.Kind, ref.Name)
			}
			if deploy.Spec.Replicas != nil {
				c.addf("%s: Deployment sets spec.replicas while an HPA owns it", o.source)
			}
		case *networkingv1.NetworkPolicy:
			c.checkNetworkPolicy(o.source, t, deploy)
		case *monitoringv1.ServiceMonitor:
			c.checkServiceMonitor(o.source, t, svcs)
		case *monitoringv1.PrometheusRule:
			if len(t.Spec.Groups) == 0 {
				c.addf("%s: no rule groups", o.source)
			}
			for _, g := range t.Spec.Groups {
				for _, r := range g.Rules {
					if r.Expr.String() == "" {
						c.addf("%s: group %s: rule %s%s has no expr", o.source, g.Name, r.Alert, r.Record)
					}
				}
			}
		}
	}
}

var recommendedLabels = []string{
	"app.kubernetes.io/name",
	"app.kubernetes.io/instance",
	"app.kubernetes.io/managed-by",
	"helm.sh/chart",
}

func (c *checker) checkMeta(o object) {
	m := o.meta
	if o.kind == "Service" {
		for _, e := range validation.IsDNS1035Label(m.Name) {
			c.addf("%s: metadata.name: %s", o.source, e)
		}
	} else {
		for _, e := range validation.IsDNS1123Subdomain(m.Name) {
			c.addf("%s: metadata.name: %s", o.source, e)
		}
	}
	c.checkLabels(o.source+": metadata.labels", m.Labels)
	for k := range m.Annotations {
		for _, e := range validation.IsQualifiedName(strings.ToLower(k)) {
			c.addf("%s: annotation key %q: %s", o.source, k, e)
		}
	}
	for _, l := range recommendedLabels {
		if m.Labels[l] == "" {
			c.addf("%s: missing label %s", o.source, l)
		}
	}
}

func (c *checker) checkLabels(where string, labels map[string]string) {
	for k, v := range labels {
		for _, e := range validation.IsQualifiedName(k) {
			c.addf("%s: key %q: %s", where, k, e)
		}
		for _, e := range content.IsLabelValue(v) {
			c.addf("%s: value of %q: %s", where, k, e)
		}
	}
}

func (c *checker) checkConfigMap(src string, cm *corev1.ConfigMap) {
	size := 0
	for k, v := range cm.Data {
		size += len(k) + len(v)
		for _, e := range validation.IsConfigMapKey(k) {
			c.addf("%s: data key %q: %s", src, k, e)
		}
	}
	if size > maxConfigMapBytes {
		c.addf("%s: data is %d bytes, over the API server's 1 MiB limit", src, size)
	}
}

func (c *checker) checkDeployment(src string, d *appsv1.Deployment, cms map[string]*corev1.ConfigMap, sas map[string]bool) {
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels) == 0 {
		c.addf("%s: spec.selector.matchLabels is empty", src)
	} else {
		c.checkSelects(src, "spec.selector", d.Spec.Selector, d.Spec.Template.Labels)
	}
	c.checkLabels(src+": spec.template.metadata.labels", d.Spec.Template.Labels)
	if s := d.Spec.Strategy.RollingUpdate; d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType && s != nil {
		if s.MaxUnavailable != nil && s.MaxUnavailable.String() != "0" && s.MaxUnavailable.String() != "0%" {
			c.addf("%s: rollingUpdate.maxUnavailable is %s; upgrades would remove capacity before replacing it", src, s.MaxUnavailable.String())
		}
	}
	c.checkPodSpec(src, &d.Spec.Template.Spec, cms, d.Name, true)
	if name := d.Spec.Template.Spec.ServiceAccountName; name != "" && len(sas) > 0 && !sas[name] {
		c.addf("%s: serviceAccountName %q is not rendered", src, name)
	}
}

func (c *checker) checkTestPod(src string, p *corev1.Pod, cms map[string]*corev1.ConfigMap, release string, podLabels map[string]string) {
	if p.Annotations["helm.sh/hook"] != "test" {
		c.addf("%s: a Pod must be a helm test hook (annotation helm.sh/hook: test)", src)
	}
	if selectsAll(podLabels, p.Labels) {
		c.addf("%s: test Pod carries the proxy pods' labels; Services and the PDB would select it", src)
	}
	if p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		c.addf("%s: restartPolicy must be Never for a test hook", src)
	}
	c.checkPodSpec(src, &p.Spec, cms, release, false)
}

// checkPodSpec enforces the hardening the chart promises.
func (c *checker) checkPodSpec(src string, ps *corev1.PodSpec, cms map[string]*corev1.ConfigMap, release string, serving bool) {
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		c.addf("%s: automountServiceAccountToken must be false", src)
	}
	psc := ps.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		c.addf("%s: pod securityContext.runAsNonRoot must be true", src)
	}
	podSeccomp := psc != nil && psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
	volumes := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		volumes[v.Name] = v
		c.checkVolumeRefs(src, v, cms, release)
		c.checkSecretModes(src, v)
	}
	if len(ps.Containers) == 0 {
		c.addf("%s: no containers", src)
	}
	for _, ct := range ps.Containers {
		where := src + ": container " + ct.Name
		sc := ct.SecurityContext
		switch {
		case sc == nil:
			c.addf("%s: no securityContext", where)
		default:
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				c.addf("%s: readOnlyRootFilesystem must be true", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				c.addf("%s: allowPrivilegeEscalation must be false", where)
			}
			if sc.Privileged != nil && *sc.Privileged {
				c.addf("%s: privileged", where)
			}
			if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
				c.addf("%s: capabilities must drop ALL", where)
			}
			if !podSeccomp && (sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
				c.addf("%s: seccompProfile must be RuntimeDefault", where)
			}
		}
		if ct.Image == "" || strings.HasSuffix(ct.Image, ":") {
			c.addf("%s: image %q has no tag", where, ct.Image)
		}
		for _, m := range ct.VolumeMounts {
			v, ok := volumes[m.Name]
			if !ok {
				c.addf("%s: volumeMount %q names no volume", where, m.Name)
			}
			if hasSecret(v) && !m.ReadOnly {
				c.addf("%s: volumeMount %q carries Secrets and must be readOnly", where, m.Name)
			}
		}
		ports := map[string]int32{}
		for _, p := range ct.Ports {
			for _, e := range validation.IsValidPortName(p.Name) {
				c.addf("%s: port name %q: %s", where, p.Name, e)
			}
			if _, dup := ports[p.Name]; dup {
				c.addf("%s: duplicate port name %q", where, p.Name)
			}
			ports[p.Name] = p.ContainerPort
		}
		if !serving {
			continue
		}
		if ct.Resources.Requests.Cpu().IsZero() || ct.Resources.Requests.Memory().IsZero() {
			c.addf("%s: resources.requests must set cpu and memory", where)
		}
		if ct.Resources.Limits.Memory().IsZero() {
			c.addf("%s: resources.limits must set memory", where)
		}
		for res, lim := range ct.Resources.Limits {
			if req, ok := ct.Resources.Requests[res]; ok && req.Cmp(lim) > 0 {
				c.addf("%s: request %s of %s is above its limit %s", where, req.String(), res, lim.String())
			}
		}
		c.checkProbe(where, "livenessProbe", ct.LivenessProbe, "/healthz", ports)
		c.checkProbe(where, "readinessProbe", ct.ReadinessProbe, "/readyz", ports)
	}
	if serving && ps.TerminationGracePeriodSeconds == nil {
		c.addf("%s: terminationGracePeriodSeconds must be set above limits.shutdown_grace", src)
	}
}

// chartOwned reports whether a ConfigMap name is one the chart itself renders:
// the release's full name (the Deployment's) or that name with a suffix.
// Others are existing objects the operator names in values.
func chartOwned(name, release string) bool {
	return name == release || strings.HasPrefix(name, release+"-")
}

func (c *checker) checkVolumeRefs(src string, v corev1.Volume, cms map[string]*corev1.ConfigMap, release string) {
	var refs []corev1.ConfigMapProjection
	if v.ConfigMap != nil {
		refs = append(refs, corev1.ConfigMapProjection{LocalObjectReference: v.ConfigMap.LocalObjectReference, Items: v.ConfigMap.Items, Optional: v.ConfigMap.Optional})
	}
	if v.Projected != nil {
		for _, s := range v.Projected.Sources {
			if s.ConfigMap != nil {
				refs = append(refs, *s.ConfigMap)
			}
		}
	}
	for _, r := range refs {
		cm, ok := cms[r.Name]
		if !ok {
			if chartOwned(r.Name, release) && (r.Optional == nil || !*r.Optional) {
				c.addf("%s: volume %q mounts ConfigMap %q, which is not rendered", src, v.Name, r.Name)
			}
			continue
		}
		for _, it := range r.Items {
			if _, ok := cm.Data[it.Key]; !ok {
				c.addf("%s: volume %q projects key %q that ConfigMap %q lacks", src, v.Name, it.Key, r.Name)
			}
		}
	}
}

// hasSecret reports whether a volume projects or mounts a Secret.
func hasSecret(v corev1.Volume) bool {
	if v.Secret != nil {
		return true
	}
	if v.Projected != nil {
		for _, s := range v.Projected.Sources {
			if s.Secret != nil {
				return true
			}
		}
	}
	return false
}

// privatePath reports whether a projected file holds a credential (a private
// key, a password, a keytab, password hashes) by the name the chart gives it.
func privatePath(p string) bool {
	for _, s := range []string{".key", "password", "keytab", "htpasswd"} {
		if strings.Contains(p, s) {
			return true
		}
	}
	return false
}

// checkSecretModes: a credential projected from a Secret must not be readable
// by other users (mode 0440 for the pod's fsGroup, not the 0644 default).
func (c *checker) checkSecretModes(src string, v corev1.Volume) {
	if v.Projected == nil {
		return
	}
	for _, s := range v.Projected.Sources {
		if s.Secret == nil {
			continue
		}
		for _, it := range s.Secret.Items {
			mode := int32(0o644)
			if v.Projected.DefaultMode != nil {
				mode = *v.Projected.DefaultMode
			}
			if it.Mode != nil {
				mode = *it.Mode
			}
			if privatePath(it.Path) && mode&0o007 != 0 {
				c.addf("%s: volume %q: %s from Secret %s has mode %#o; a credential must not be world-readable", src, v.Name, it.Path, s.Secret.Name, mode)
			}
		}
	}
}

func (c *checker) checkProbe(where, which string, p *corev1.Probe, path string, ports map[string]int32) {
	if p == nil || p.HTTPGet == nil {
		c.addf("%s: %s must be an httpGet probe", where, which)
		return
	}
	if p.HTTPGet.Path != path {
		c.addf("%s: %s path is %q, want %q", where, which, p.HTTPGet.Path, path)
	}
	if name := p.HTTPGet.Port.StrVal; name != "" {
		if _, ok := ports[name]; !ok {
			c.addf("%s: %s port %q is not a container port", where, which, name)
		}
	}
}

func (c *checker) checkService(src string, s *corev1.Service, d *appsv1.Deployment) {
	if len(s.Spec.Selector) == 0 {
		c.addf("%s: empty selector", src)
	} else if !selectsAll(s.Spec.Selector, d.Spec.Template.Labels) {
		c.addf("%s: selector %v does not select the Deployment's pods", src, s.Spec.Selector)
	}
	if s.Spec.ExternalTrafficPolicy != "" && s.Spec.Type != corev1.ServiceTypeLoadBalancer && s.Spec.Type != corev1.ServiceTypeNodePort {
		c.addf("%s: externalTrafficPolicy is only valid for LoadBalancer and NodePort services", src)
	}
	names := containerPorts(&d.Spec.Template.Spec)
	for _, p := range s.Spec.Ports {
		for _, e := range validation.IsValidPortName(p.Name) {
			c.addf("%s: port name %q: %s", src, p.Name, e)
		}
		if p.TargetPort.StrVal != "" {
			if cp, ok := names[p.TargetPort.StrVal]; !ok {
				c.addf("%s: targetPort %q is not a container port", src, p.TargetPort.StrVal)
			} else if protocol(p.Protocol) != protocol(cp.Protocol) {
				c.addf("%s: port %q is %s but container port %q is %s", src, p.Name, protocol(p.Protocol), p.TargetPort.StrVal, protocol(cp.Protocol))
			}
		}
		if p.NodePort != 0 && s.Spec.Type == corev1.ServiceTypeClusterIP {
			c.addf("%s: nodePort set on a ClusterIP service", src)
		}
	}
}

func (c *checker) checkNetworkPolicy(src string, np *networkingv1.NetworkPolicy, d *appsv1.Deployment) {
	c.checkSelects(src, "spec.podSelector", &np.Spec.PodSelector, d.Spec.Template.Labels)
	names := containerPorts(&d.Spec.Template.Spec)
	for i, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			if p.Port != nil && p.Port.StrVal != "" {
				proto := corev1.ProtocolTCP
				if p.Protocol != nil {
					proto = *p.Protocol
				}
				if cp, ok := names[p.Port.StrVal]; !ok {
					c.addf("%s: ingress[%d] port %q is not a container port", src, i, p.Port.StrVal)
				} else if proto != protocol(cp.Protocol) {
					c.addf("%s: ingress[%d] port %q is %s but the container port is %s", src, i, p.Port.StrVal, proto, protocol(cp.Protocol))
				}
			}
		}
	}
}

func (c *checker) checkServiceMonitor(src string, sm *monitoringv1.ServiceMonitor, svcs map[string]*corev1.Service) {
	var match *corev1.Service
	for _, s := range svcs {
		if selectsAll(sm.Spec.Selector.MatchLabels, s.Labels) {
			if match != nil {
				c.addf("%s: selector matches more than one Service (%s, %s)", src, match.Name, s.Name)
			}
			match = s
		}
	}
	if match == nil {
		c.addf("%s: selector %v matches no rendered Service", src, sm.Spec.Selector.MatchLabels)
		return
	}
	for _, ep := range sm.Spec.Endpoints {
		found := false
		for _, p := range match.Spec.Ports {
			found = found || p.Name == ep.Port
		}
		if !found {
			c.addf("%s: endpoint port %q is not a port of Service %s", src, ep.Port, match.Name)
		}
	}
}

func (c *checker) checkSelects(src, field string, sel *metav1.LabelSelector, labels map[string]string) {
	if sel == nil {
		c.addf("%s: %s is empty", src, field)
		return
	}
	if len(sel.MatchExpressions) > 0 {
		c.addf("%s: %s uses matchExpressions, which this check does not evaluate", src, field)
	}
	if !selectsAll(sel.MatchLabels, labels) {
		c.addf("%s: %s %v does not select the Deployment's pods %v", src, field, sel.MatchLabels, labels)
	}
}

// selectsAll reports whether every selector pair is present in labels.
func selectsAll(selector, labels map[string]string) bool {
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

func containerPorts(ps *corev1.PodSpec) map[string]corev1.ContainerPort {
	out := map[string]corev1.ContainerPort{}
	for _, ct := range ps.Containers {
		for _, p := range ct.Ports {
			out[p.Name] = p
		}
	}
	return out
}

// protocol is p with the API's default (TCP) applied.
func protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// extractConfig writes the Deployment's ConfigMap-backed volume mounted at
// the -config path into dir, laid out as the kubelet projects it.
func extractConfig(objs []object, dir string) error {
	var d *appsv1.Deployment
	cms := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		switch t := o.typed.(type) {
		case *appsv1.Deployment:
			d = t
		case *corev1.ConfigMap:
			cms[t.Name] = t
		}
	}
	if d == nil || len(d.Spec.Template.Spec.Containers) == 0 {
		return errors.New("no Deployment")
	}
	ct := d.Spec.Template.Spec.Containers[0]
	configPath := ""
	for i, a := range ct.Args {
		if a == "-config" && i+1 < len(ct.Args) {
			configPath = ct.Args[i+1]
		}
	}
	if configPath == "" {
		return errors.New("container args carry no -config PATH")
	}
	volName := ""
	for _, m := range ct.VolumeMounts {
		if m.MountPath == configPath {
			volName = m.Name
		}
	}
	var sources []corev1.ConfigMapProjection
	var external []string // paths projected from objects the chart does not render
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name != volName {
			continue
		}
		if v.ConfigMap != nil {
			sources = append(sources, corev1.ConfigMapProjection{LocalObjectReference: v.ConfigMap.LocalObjectReference, Items: v.ConfigMap.Items})
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				switch {
				case s.ConfigMap != nil && !chartOwned(s.ConfigMap.Name, d.Name):
					for _, it := range s.ConfigMap.Items {
						external = append(external, it.Path)
					}
				case s.ConfigMap != nil:
					sources = append(sources, *s.ConfigMap)
				case s.Secret != nil:
					for _, it := range s.Secret.Items {
						external = append(external, it.Path)
					}
				}
			}
		}
	}
	if len(sources) == 0 {
		return fmt.Errorf("no ConfigMap volume is mounted at %s", configPath)
	}
	written := []string{}
	for _, s := range sources {
		cm, ok := cms[s.Name]
		if !ok {
			return fmt.Errorf("ConfigMap %s not rendered", s.Name)
		}
		items := s.Items
		if len(items) == 0 {
			for k := range cm.Data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			rel := filepath.Clean(filepath.FromSlash(it.Path))
			if filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				return fmt.Errorf("ConfigMap %s key %s: path %q escapes the volume", s.Name, it.Key, it.Path)
			}
			dst := filepath.Join(dir, rel)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(dst, []byte(cm.Data[it.Key]), 0o644); err != nil {
				return err
			}
			written = append(written, rel)
		}
	}
	sort.Strings(written)
	fmt.Printf("validate: extracted %s into %s: %s\n", configPath, dir, strings.Join(written, " "))
	sort.Strings(external)
	for _, p := range external {
		fmt.Printf("validate: external %s\n", p)
	}
	return nil
}
