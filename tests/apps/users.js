// A user's own k6 script, as they would write it for k6 alone: options of its own (the
// rehearsal replaces the executor's), a setup, named requests, checks and a threshold.
import http from 'k6/http';
import { check } from 'k6';

export const options = {
  vus: 3,
  duration: '5s',
  thresholds: { checks: ['rate>0.5'] },
};

export function setup() {
  const res = http.get(`${__ENV.BASE_URL}/`);
  return { release: res.body };
}

export default function () {
  const home = http.get(`${__ENV.BASE_URL}/`, { tags: { name: 'home' } });
  check(home, { 'home answers 200': (r) => r.status === 200 });
  const slow = http.get(`${__ENV.BASE_URL}/slow?ms=20`);
  const expected = Number(__ENV.SLOW_STATUS || 200);
  check(slow, { 'slow answers as expected': (r) => r.status === expected });
}

export function handleSummary(data) {
  return { stdout: 'the user summary\n' };
}

// Another iteration function, for --k6-exec.
export function browse() {
  const home = http.get(`${__ENV.BASE_URL}/`, { tags: { name: 'browse' } });
  check(home, { 'home answers 200': (r) => r.status === 200 });
}
