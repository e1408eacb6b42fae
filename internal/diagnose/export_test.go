package diagnose

// Held says what a Diagnoser holds: incidents not yet forgotten (batch
// mode: all), upstream failures, proxy errors waiting.
func (d *Diagnoser) Held() (incidents, failures, pending int) {
	return len(d.incidents), len(d.failures), len(d.httpErrors)
}
