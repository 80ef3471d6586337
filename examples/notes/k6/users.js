// The notes app's users, as k6 sends them: each VU is one person with their own cookies,
// who logs in once, then lists and writes notes, and now and then logs out and back in.
//
//   k6 run -e BASE_URL=https://notes.example examples/notes/k6/users.js       (on its own)
//   zerodown rehearse examples.notes.app:create_app --factory --k6-script examples/notes/k6/users.js
//
// Under `zerodown rehearse` the options' executor is replaced by the rehearsal's (--rate
// iterations of default() per second); the checks stay, and every failed one is reported
// with the instance and release that answered.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8000';
const PASSWORD = 'correct horse battery staple';

export const options = {
  scenarios: { users: { executor: 'constant-vus', vus: 10, duration: '30s' } },
  thresholds: { checks: ['rate>0.99'] },
};

// One person per VU; a run's names are its own, so that a second run can register again.
const run = Date.now().toString(36);
const name = () => `user-${run}-${exec.vu.idInTest}`;
let loggedIn = false;

const JSON_BODY = { 'Content-Type': 'application/json' };
const post = (path, body) =>
  http.post(`${BASE_URL}${path}`, JSON.stringify(body), { headers: JSON_BODY, tags: { name: path } });

function logIn() {
  const credentials = { username: name(), password: PASSWORD };
  let res = post('/login', credentials);
  if (res.status === 401) res = post('/register', credentials);
  loggedIn = check(res, { 'logged in': (r) => r.status === 200 || r.status === 201 });
}

export default function () {
  if (!loggedIn) logIn();
  const list = http.get(`${BASE_URL}/notes`, { tags: { name: '/notes' } });
  // A 401 here is a user who was logged out by the deploy.
  check(list, { 'still logged in': (r) => r.status === 200 });
  const note = post('/notes', { text: `note ${exec.vu.iterationInInstance} of ${name()}` });
  check(note, { 'note saved': (r) => r.status === 201 });
  if (Math.random() < 0.05) {
    const out = post('/logout', {});
    check(out, { 'logged out': (r) => r.status === 200 });
    loggedIn = false;
  }
}
