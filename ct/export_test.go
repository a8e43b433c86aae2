package ct

// SetBatchBytes bounds the bytes of an RFC 6962 batch, for tests.
func SetBatchBytes(m *Monitor, n int) {
	m.init()
	for _, s := range m.srcs {
		if r, ok := s.(*rfc6962); ok {
			r.maxBytes = n
		}
	}
}
