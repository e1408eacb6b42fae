package diagnose

// Merge TEMPORARY (replaced by the streaming helper's version).
func (d *Diagnoser) Merge(o *Diagnoser) {
	for _, inc := range o.incidents {
		d.add(inc)
	}
	for id, n := range o.counts {
		_ = id
		_ = n
	}
	d.dropped += o.dropped
	d.failures = append(d.failures, o.failures...)
	d.httpErrors = append(d.httpErrors, o.httpErrors...)
}
