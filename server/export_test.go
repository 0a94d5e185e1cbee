package server

// CallPoolSize reports the goroutines s's gRPC call pool has started and
// not stopped, and how many of them are idle.
func CallPoolSize(s *Server) (started, idle int) { return s.calls.size() }
