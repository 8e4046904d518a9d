"""GET /demo: a page to try the model by hand: upload a photo or type feature values, see the answer.

The page asks GET /info what the model takes, and POSTs to /predict as any client would. For a
model of feature values, a link can carry them: `/demo?x1=0.1&x2=-0.7` fills the form and asks.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Try the model</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; } .muted { color: #666; font-size: .9rem; }
  label { display: block; margin: .3rem 0; } input[type=number] { width: 9rem; }
  button { margin-top: .8rem; padding: .4rem 1.2rem; }
  #preview { max-width: 12rem; max-height: 12rem; display: none; margin-top: .5rem; image-rendering: pixelated; }
  .bar { display: flex; align-items: center; gap: .5rem; margin: .15rem 0; }
  .bar span:first-child { width: 9rem; text-align: right; }
  .fill { background: #4a7bd0; height: .9rem; }
  #error { color: #b00020; }
</style>
</head>
<body>
<h1>Try the model</h1>
<p class="muted" id="about">Loading what the model takes...</p>
<form id="form">
  <div id="fields"></div>
  <label>API key (only if the server asks for one) <input id="key" type="password" autocomplete="off"></label>
  <button type="submit">Predict</button>
</form>
<img id="preview" alt="the chosen image">
<h2 id="answer-title" style="display:none">Answer</h2>
<div id="answer"></div>
<p id="error"></p>
<script>
// Every name shown (classes, features, the target) comes from the model: set as text, never as HTML.
let model = null;
const fields = document.getElementById("fields");
const element = (tag, properties = {}, children = []) => {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
};
function headers() {
  const key = document.getElementById("key").value;
  return key ? {"X-API-Key": key} : {};
}
async function describe() {
  const response = await fetch("/info", {headers: headers()});
  const about = document.getElementById("about");
  if (!response.ok) {
    about.textContent = response.status === 401 ? "This server needs an API key: type it below."
                                                : "GET /info answered " + response.status;
    return false;
  }
  model = (await response.json()).model;
  const input = model.input;
  const what = model.classes ? "a classifier of " + model.classes.length + " classes: " + model.classes.join(", ")
                             : "a regressor of " + model.target;
  about.textContent = "Checkpoint " + model.checkpoint + ": " + what + ".";
  fields.replaceChildren();
  if (input.kind === "image") {
    const file = element("input", {id: "file", name: "file", type: "file", accept: "image/*"});
    file.addEventListener("change", (event) => {
      const preview = document.getElementById("preview");
      preview.src = URL.createObjectURL(event.target.files[0]);
      preview.style.display = "block";
    });
    fields.append(element("label", {}, ["Image (any size; resized to " + input.image_size.join("x") + ") ", file]));
  } else {
    const given = new URLSearchParams(window.location.search);
    for (const [index, name] of input.features.entries()) {
      const box = element("input", {id: "feature-" + index, type: "number", step: "any", required: true});
      if (given.has(name)) box.value = given.get(name);
      fields.append(element("label", {}, [name + " ", box]));
    }
    if (input.features.every((name) => given.has(name))) document.getElementById("form").requestSubmit();
  }
  return true;
}
function show(answer) {
  const out = document.getElementById("answer");
  document.getElementById("answer-title").style.display = "block";
  if (answer.probabilities) {
    const rows = Object.entries(answer.probabilities).sort((a, b) => b[1] - a[1]);
    const share = " (" + (100 * answer.probability).toFixed(1) + "%)";
    const best = element("p", {}, [element("b", {textContent: answer.class}), share]);
    out.replaceChildren(best, ...rows.map(([name, p]) => element("div", {className: "bar"}, [
      element("span", {textContent: name}),
      Object.assign(element("span", {className: "fill"}), {style: "width:" + (20 * p).toFixed(2) + "rem"}),
      element("span", {textContent: (100 * p).toFixed(1) + "%"}),
    ])));
  } else {
    const value = model.target + " = " + answer.prediction.toPrecision(6);
    out.replaceChildren(element("p", {}, [element("b", {textContent: value})]));
  }
}
document.getElementById("key").addEventListener("change", describe);
document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("error");
  error.textContent = "";
  if (!model && !(await describe())) { error.textContent = "The model's description could not be read."; return; }
  let response;
  if (model.input.kind === "image") {
    const file = document.getElementById("file").files[0];
    if (!file) { error.textContent = "Choose an image first."; return; }
    const body = new FormData(); body.append("file", file);
    response = await fetch("/predict", {method: "POST", body, headers: headers()});
  } else {
    const row = {};
    model.input.features.forEach((name, index) => {
      row[name] = Number(document.getElementById("feature-" + index).value);
    });
    response = await fetch("/predict", {method: "POST", body: JSON.stringify(row),
                                        headers: {...headers(), "Content-Type": "application/json"}});
  }
  const answer = await response.json();
  if (!response.ok) { error.textContent = answer.detail || response.status; return; }
  show(answer);
  document.body.dataset.answered = JSON.stringify(answer);
});
describe();
</script>
</body>
</html>
"""
