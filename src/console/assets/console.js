// keyreg console: the little the pages need from script. Every page works
// as plain forms; this adds modal dialogs that trap and return focus, the
// secret dialog's copy button and acknowledgement, select-all, bulk buttons
// that wait for a selection, and buttons that unlock when a confirmation is
// typed. No inline script exists (the
// CSP forbids it), so everything is wired here by data- attributes.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Dialogs opened by a button: native modal dialogs keep focus inside and
  // give it back to the opener when they close.
  for (const opener of document.querySelectorAll("[data-open]")) {
    const dialog = document.getElementById(opener.dataset.open);
    if (!dialog) continue;
    opener.addEventListener("click", () => dialog.showModal());
    dialog.addEventListener("close", () => opener.focus());
  }
  // A link to a page's dialog (`#revoke-dialog`, from a row's menu) opens it.
  const linked = location.hash && document.getElementById(location.hash.slice(1));
  const linkedOpener = linked && document.querySelector(`[data-open="${linked.id}"]`);
  if (linked instanceof HTMLDialogElement && linkedOpener) linked.showModal();
  for (const closer of document.querySelectorAll("[data-close]")) {
    closer.addEventListener("click", () => closer.closest("dialog").close());
  }

  // The one-time secret: modal from the start, and it cannot be dismissed
  // (Escape included) before "I have stored it" is ticked.
  for (const dialog of document.querySelectorAll("dialog[data-modal]")) {
    dialog.close();
    dialog.showModal();
    const stored = dialog.querySelector("#stored");
    dialog.addEventListener("cancel", (e) => {
      if (!stored || !stored.checked) e.preventDefault();
    });
  }

  // Copy buttons: the text of the element they name, to the clipboard.
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      const status = document.getElementById("copy-status");
      try {
        await navigator.clipboard.writeText(text);
        if (status) status.textContent = "Copied to the clipboard.";
      } catch {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copy));
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        if (status) status.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
      }
    });
  }

  // A checkbox or a typed confirmation that unlocks a button.
  for (const control of document.querySelectorAll("[data-unlocks]")) {
    const target = document.getElementById(control.dataset.unlocks);
    const update = () => {
      target.disabled = control.type === "checkbox"
        ? !control.checked
        : control.value !== control.dataset.mustEqual;
    };
    control.addEventListener("input", update);
    control.addEventListener("change", update);
    update();
  }

  // Select every row's checkbox of a named field.
  for (const all of document.querySelectorAll("[data-select-all]")) {
    const name = all.dataset.selectAll;
    all.addEventListener("change", () => {
      for (const box of all.form.querySelectorAll(`input[type=checkbox][name="${name}"]`)) {
        box.checked = all.checked;
      }
      all.form.dispatchEvent(new Event("change"));
    });
  }

  // "All of <service>": ticks or clears the group's checkboxes, and shows
  // whether all, some or none are ticked.
  for (const all of document.querySelectorAll("[data-select-group]")) {
    const group = all.closest(".service");
    const boxes = [...group.querySelectorAll(".checks input[type=checkbox]")];
    const update = () => {
      const ticked = boxes.filter((b) => b.checked).length;
      all.checked = ticked === boxes.length;
      all.indeterminate = ticked > 0 && ticked < boxes.length;
    };
    all.addEventListener("change", () => {
      for (const box of boxes) box.checked = all.checked;
    });
    group.addEventListener("change", update);
    all.closest("[hidden]")?.removeAttribute("hidden");
    update();
  }

  // A search box that shows only the checkboxes of `name` whose label holds
  // what is typed, and the groups that still hold one.
  for (const search of document.querySelectorAll("[data-filters]")) {
    const form = search.form;
    const name = search.dataset.filters;
    search.addEventListener("input", () => {
      const wanted = search.value.trim().toLowerCase();
      for (const box of form.querySelectorAll(`input[type=checkbox][name="${name}"]`)) {
        const row = box.closest(".check");
        row.hidden = wanted !== "" && !row.textContent.toLowerCase().includes(wanted);
      }
      for (const group of form.querySelectorAll(".service")) {
        const matches = [...group.querySelectorAll(".checks .check")].some((r) => !r.hidden);
        group.hidden = !matches;
        // Opened to show what matches; folded back as it was when cleared.
        group.dataset.folded ??= String(!group.open);
        group.open = wanted !== "" ? matches : group.dataset.folded === "false";
      }
    });
    search.closest("[hidden]")?.removeAttribute("hidden");
  }

  // Buttons that act on the selected rows, usable only with a row selected.
  for (const button of document.querySelectorAll("[data-needs-selection]")) {
    const form = button.form;
    const name = button.dataset.needsSelection;
    const update = () => {
      button.disabled = !form.querySelector(`input[type=checkbox][name="${name}"]:checked`);
    };
    form.addEventListener("change", update);
    update();
  }
});
