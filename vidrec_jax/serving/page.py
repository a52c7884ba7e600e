"""The page `GET /` serves (http.py): pick a user or type a watch history, see the recommended
videos beside the history. One HTML document, no build step and nothing fetched from outside:
it calls the service's own /users, /recommend and /thumbnail/ID."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>vidrec_jax: recommendations</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
  form { display: flex; gap: .8em; align-items: end; flex-wrap: wrap; margin-bottom: 1em; }
  label { display: flex; flex-direction: column; font-size: 12px; color: #555; }
  input { font: inherit; padding: .3em; }
  #error { color: #b00020; white-space: pre-wrap; }
  .columns { display: grid; grid-template-columns: 1fr 2fr; gap: 2em; }
  .card { display: flex; gap: .7em; padding: .4em 0; border-bottom: 1px solid #eee; }
  .card img, .card .noimg { width: 72px; height: 72px; object-fit: cover; background: #ddd;
                            flex: none; }
  .meta { font-size: 12px; color: #555; }
  .cold { color: #fff; background: #1565c0; border-radius: 3px; padding: 0 .3em; }
  h2 { font-size: 15px; }
</style>
</head>
<body>
<h1>Recommendations <span class="meta" id="bundle"></span></h1>
<form id="ask">
  <label>user <input id="user" list="users" placeholder="a user id"></label>
  <datalist id="users"></datalist>
  <label>or a watch history (video ids, oldest first)
    <input id="history" size="32" placeholder="e.g. 3, 17, 42"></label>
  <label>k <input id="k" type="number" min="1" value="10" style="width:5em"></label>
  <button type="submit">recommend</button>
</form>
<div id="error"></div>
<div class="columns">
  <div><h2>history</h2><div id="watched"></div></div>
  <div><h2>recommended</h2><div id="list"></div></div>
</div>
<script>
const $ = (id) => document.getElementById(id);
function card(v, extra) {
  const div = document.createElement("div");
  div.className = "card";
  const img = document.createElement("img");
  img.className = "thumb";
  img.alt = "video " + v.video_id;
  img.src = "/thumbnail/" + v.video_id;
  img.onerror = () => { const s = document.createElement("div"); s.className = "noimg";
                        img.replaceWith(s); };
  const text = document.createElement("div");
  const title = document.createElement("div");
  title.textContent = (v.rank ? v.rank + ". " : "") + v.title;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = "video " + v.video_id + " \\u00b7 " + v.content_type + (extra || "");
  text.append(title, meta);
  if (v.cold) { const c = document.createElement("span"); c.className = "cold";
                c.textContent = "cold"; meta.append(" ", c); }
  div.append(img, text);
  return div;
}
async function ask(event) {
  if (event) event.preventDefault();
  $("error").textContent = "";
  const k = parseInt($("k").value || "10", 10);
  const hist = $("history").value.trim();
  let response;
  if (hist) {
    const ids = hist.split(/[\\s,]+/).filter(Boolean).map(Number);
    response = await fetch("/recommend", {method: "POST",
      headers: {"content-type": "application/json"}, body: JSON.stringify({history: ids, k})});
  } else {
    const q = new URLSearchParams({user: $("user").value, k});
    response = await fetch("/recommend?" + q);
  }
  const body = await response.json();
  $("list").replaceChildren();
  $("watched").replaceChildren();
  if (!response.ok) { $("error").textContent = body.error; return; }
  if (body.note) $("error").textContent = body.note;
  for (const v of body.watched || []) $("watched").append(card(v));
  if (!(body.watched || []).length) $("watched").textContent = "(none in the bundle)";
  for (const r of body.records) {
    const heads = Object.entries(r.scores).map(([h, s]) => h + " " + s.toFixed(4)).join(", ");
    $("list").append(card(r, " \\u00b7 score " + r.score.toFixed(4) + " (" + heads + ")"));
  }
}
async function start() {
  const health = await (await fetch("/healthz")).json();
  $("bundle").textContent = "checkpoint step " + health.checkpoint_step + ", " +
      health.videos + " videos, " + health.users + " users";
  $("k").value = health.k;
  $("k").max = health.candidates;
  const users = await (await fetch("/users?limit=200")).json();
  for (const u of users.users) { const o = document.createElement("option"); o.value = u;
                                 $("users").append(o); }
  if (users.users.length) { $("user").value = users.users[0]; await ask(); }
}
$("ask").addEventListener("submit", ask);
start();
</script>
</body>
</html>
"""
