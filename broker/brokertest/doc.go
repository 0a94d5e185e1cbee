// Package brokertest is a test kit for the broker: a settable clock for
// broker.Config.Now, signing keys made once per test binary, scripted token
// endpoints (one answering from a pool of pre-signed grants, for benchmarks;
// one whose hops are scripted per test, for table tests), a memory store
// whose operations fail on demand, and a key set that fails.
//
// It imports no broker type, so that the broker's own internal tests (package
// broker) can use it as well as its black-box tests and other packages'.
package brokertest
