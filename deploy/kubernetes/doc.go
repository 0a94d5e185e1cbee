// Package kubernetes holds chainbroker's example Kubernetes manifests
// (Deployment, Service, ConfigMap, Secret, PodDisruptionBudget and a
// kustomization.yaml listing them; see README.md in this directory) and the
// test that checks them: it parses every manifest strictly against the fields
// it knows, checks kinds and API versions, the Deployment's gRPC probes,
// non-root and read-only security context, resources, that labels and
// selectors agree across Deployment, Service and PodDisruptionBudget, and
// that the embedded configuration parses with the repository's config
// package. The package has no Go code besides this test.
package kubernetes
