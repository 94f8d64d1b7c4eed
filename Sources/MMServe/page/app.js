// The mm search page: queries POST /search (text, image or a result's id) and shows the grid.
"use strict";
const $ = (id) => document.getElementById(id);

async function post(path, body) {
  const response = await fetch(path, { method: "POST", body: JSON.stringify(body) });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function search(query, label) {
  const body = Object.assign({ index: $("index").value, modality: $("modality").value, k: Number($("k").value) || 24 }, query);
  say("Searching " + label + "…");
  const started = performance.now();
  try {
    const answer = await post("/search", body);
    show(answer.results);
    say(answer.results.length + " results for " + label + " in " + Math.round(performance.now() - started) + " ms");
  } catch (e) {
    $("results").replaceChildren();
    say(e.message, true);
  }
}

function show(results) {
  const cards = results.map((r) => {
    const card = document.createElement("figure");
    card.className = "result";
    card.dataset.id = r.id;
    card.title = "Search by this " + r.kind;
    if (r.thumbnail) {
      const img = document.createElement("img");
      img.src = r.thumbnail;
      img.alt = r.caption || "";
      img.loading = "lazy";
      card.append(img);
    }
    const caption = document.createElement("figcaption");
    caption.className = "caption";
    caption.textContent = r.caption || (r.image_path || "").split("/").pop();
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = "id " + r.id + " · " + r.score.toFixed(4);
    card.append(caption, score);
    card.addEventListener("click", () => search({ id: r.id }, "result " + r.id));
    return card;
  });
  $("results").replaceChildren(...cards);
}

$("query").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (text) search({ text }, "“" + text + "”");
});

$("image").addEventListener("change", () => {
  const file = $("image").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => search({ image: String(reader.result).split(",")[1] }, file.name);
  reader.readAsDataURL(file);
});

(async () => {
  const names = await (await fetch("/indices-list")).json();
  $("index").replaceChildren(...names.map((n) => new Option(n, n)));
  // ?q=… searches at once (for links and for the headless-browser test).
  const q = new URLSearchParams(location.search).get("q");
  if (q) { $("text").value = q; search({ text: q }, "“" + q + "”"); }
})();
