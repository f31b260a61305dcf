// Baton's board: refresh the page's live regions every 2 s, and send decisions without leaving
// the page. Without JavaScript the pages still work (forms post and redirect back).
"use strict";

const POLL_MS = 2000;
let sending = 0; // decisions in flight: no refresh replaces their form meanwhile

async function refresh() {
  if (sending) return;
  let answer;
  try {
    answer = await fetch(location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
  } catch (err) {
    return; // the API restarts: try again at the next tick
  }
  if (answer.redirected || !answer.ok) return;
  const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
  for (const region of document.querySelectorAll("[data-live]")) {
    const next = fresh.getElementById(region.id);
    if (!next || next.innerHTML === region.innerHTML) continue;
    // Never pull text or focus from under someone typing or choosing in this region.
    const typing = document.activeElement && document.activeElement.matches("textarea, input, select");
    if (typing && region.contains(document.activeElement)) continue;
    if ([...region.querySelectorAll("textarea")].some((t) => t.value)) continue;
    region.innerHTML = next.innerHTML;
  }
  const stamp = fresh.getElementById("updated");
  if (stamp) document.getElementById("updated").textContent = stamp.textContent;
}

// Say the outcome where it stays: the page's status line (outside the live regions, which a
// refresh may replace once the rollout moved on) and the form's own line.
function tell(form, text, refused) {
  for (const line of [document.getElementById("decision-outcome"), form.querySelector(".outcome")]) {
    if (!line) continue;
    line.className = line.id ? (refused ? "refused" : "ok") : "outcome " + (refused ? "refused" : "ok");
    line.textContent = text;
  }
}

async function decide(event) {
  const form = event.target.closest("form[data-decision]");
  if (!form) return;
  event.preventDefault();
  const button = event.submitter;
  const body = new URLSearchParams(new FormData(form));
  tell(form, "Sending…", false);
  for (const b of form.querySelectorAll("button")) b.disabled = true;
  sending += 1;
  try {
    const answer = await fetch(button.formAction || form.action, {
      method: "POST",
      headers: { Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" },
      body,
    });
    const result = await answer.json();
    if (answer.ok) {
      tell(form, result.message, false);
      form.querySelector("textarea").value = "";
    } else {
      tell(form, result.error + (result.review_again
        ? " The content changed since you looked: review the new diff and decide again."
        : ""), true);
    }
  } catch (err) {
    tell(form, "The board did not answer: " + err, true);
  } finally {
    sending -= 1;
    for (const b of form.querySelectorAll("button")) b.disabled = false;
  }
  refresh();
}

document.addEventListener("submit", decide);
setInterval(refresh, POLL_MS);
