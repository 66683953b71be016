// The run form, generated from /api/options: one input per config field, named by its path
// (e.g. model.activation), with help text and the reason when a field does not apply.

const SECTION_TITLES = {
  data: "Data", model: "Model and tricks: activation, init, batchnorm, dropout", augment: "Augmentation",
  train: "Training", telemetry: "Telemetry",
};
// The seed's notation next to the config names.
const NOTATION = {
  "model.leaky_slope": "leaky slope a", "model.dropout": "dropout (keep probability p = 1 - dropout)",
  "model.bn_momentum": "batchnorm momentum α", "train.momentum": "momentum", "model.init_std": "init std σ",
};

// The five settings a lesson turns on, shown first; the rest wait under "Advanced".
const ESSENTIAL = ["model.activation", "model.init", "model.depth", "model.batchnorm", "model.dropout"];

export class ConfigForm {
  constructor(root, options, onChange) {
    this.root = root;
    this.options = options;
    this.onChange = onChange;
    this.fields = new Map();
    options.sections.forEach((s) => s.fields.forEach((f) => this.fields.set(f.name, f)));
    this.render();
  }

  render() {
    this.root.replaceChildren();
    const essentials = this.fieldset("essentials", "The tricks that matter most");
    for (const name of ESSENTIAL) if (this.fields.has(name)) essentials.append(this.fieldRow(this.fields.get(name)));
    const advanced = Object.assign(document.createElement("details"), { className: "advanced" });
    advanced.dataset.testid = "advanced";
    advanced.append(Object.assign(document.createElement("summary"), {
      textContent: "Advanced: data, the rest of the model, augmentation, training, telemetry" }));
    for (const section of this.options.sections) {
      const fs = this.fieldset(section.name, SECTION_TITLES[section.name] || section.name);
      for (const f of section.fields) if (!ESSENTIAL.includes(f.name)) fs.append(this.fieldRow(f));
      advanced.append(fs);
    }
    this.root.append(essentials, advanced);
    this.root.addEventListener("input", () => { this.refreshApplicability(); this.onChange(); });
    this.root.addEventListener("change", () => { this.refreshApplicability(); this.onChange(); });
    this.refreshApplicability();
  }

  fieldset(name, title) {
    const fs = document.createElement("fieldset");
    fs.dataset.section = name;
    const legend = document.createElement("legend");
    legend.textContent = title;
    const sectionError = Object.assign(document.createElement("small"), { className: "error" });
    sectionError.dataset.errorFor = name;
    const hidden = Object.assign(document.createElement("small"), { className: "hidden-note" });
    fs.append(legend, sectionError, hidden);
    return fs;
  }

  fieldRow(f) {
    const row = document.createElement("div");
    row.className = "field";
    row.dataset.field = f.name;
    const id = "f-" + f.name.replace(".", "-");
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = NOTATION[f.name] || f.name.split(".")[1].replaceAll("_", " ");
    let input;
    if (f.type === "choice") {
      input = document.createElement("select");
      for (const c of f.choices) {
        const o = document.createElement("option");
        o.value = c;
        o.textContent = c;
        if (f.choice_help && f.choice_help[c]) o.title = f.choice_help[c];
        input.append(o);
      }
    } else if (f.type === "bool") {
      input = document.createElement("input");
      input.type = "checkbox";
    } else {
      input = document.createElement("input");
      input.type = "number";
      const lo = f.ge ?? f.gt, hi = f.le ?? f.lt;
      if (lo !== undefined) input.min = lo;
      if (hi !== undefined) input.max = hi;
      input.step = f.type === "int" ? "1" : "any";
    }
    input.id = id;
    input.name = f.name;
    this.setValue(input, f, f.default);
    const help = document.createElement("small");
    help.className = "help";
    help.id = id + "-help";
    help.textContent = f.help + this.rangeText(f);
    input.setAttribute("aria-describedby", help.id);
    const why = document.createElement("small");
    why.className = "why";
    const error = document.createElement("small");
    error.className = "error";
    error.dataset.errorFor = f.name;
    error.setAttribute("role", "alert");
    if (f.type === "bool") {
      label.prepend(input, " ");
      row.append(label, help, why, error);
    } else {
      row.append(label, input, help, why, error);
    }
    return row;
  }

  rangeText(f) {
    if (f.type !== "int" && f.type !== "float") return "";
    const lo = f.ge !== undefined ? `${f.ge}` : f.gt !== undefined ? `>${f.gt}` : null;
    const hi = f.le !== undefined ? `${f.le}` : f.lt !== undefined ? `<${f.lt}` : null;
    return lo !== null && hi !== null ? ` (${lo} … ${hi})` : "";
  }

  input(name) { return this.root.querySelector(`[name="${name}"]`); }

  setValue(input, f, value) {
    if (f.type === "bool") input.checked = Boolean(value);
    else input.value = value;
  }

  readValue(f) {
    const input = this.input(f.name);
    if (f.type === "bool") return input.checked;
    if (f.type === "choice") return input.value;
    if (input.value.trim() === "") return input.value;
    const n = Number(input.value);
    return Number.isNaN(n) ? input.value : n;  // the server names the field if it is not a number
  }

  // The config as the server wants it: only fields that differ from the defaults, by section.
  config() {
    const out = {};
    for (const f of this.fields.values()) {
      const v = this.readValue(f);
      // A field that does not apply is left out, except a choice the server should explain (cnn on points).
      if (v === f.default || (!this.applies(f) && !f.applies_when?.only_for)) continue;
      const [section, key] = f.name.split(".");
      (out[section] ||= {})[key] = v;
    }
    return out;
  }

  setConfig(config) {
    for (const f of this.fields.values()) {
      const [section, key] = f.name.split(".");
      const v = config?.[section]?.[key];
      this.setValue(this.input(f.name), f, v === undefined ? f.default : v);
    }
    this.refreshApplicability();
  }

  applies(f) {
    const rule = f.applies_when;
    if (!rule) return true;
    const dep = this.fields.get(rule.field);
    const v = this.readValue(dep);
    if (rule.only_for && this.readValue(f) !== rule.only_for) return true;
    if (rule.values === "positive") return Number(v) > 0;
    return rule.values.includes(v);
  }

  // A field that does not apply is hidden, and its fieldset says which and why in one line.
  refreshApplicability() {
    const hiddenBySection = new Map();
    for (const f of this.fields.values()) {
      const row = this.root.querySelector(`[data-field="${f.name}"]`);
      const ok = this.applies(f);
      row.classList.toggle("off", !ok);
      // model.arch stays selectable: the server's message explains a cnn on points.
      const hide = !ok && f.name !== "model.arch";
      row.hidden = hide;
      if (f.name !== "model.arch") this.input(f.name).disabled = !ok;
      row.querySelector(".why").textContent = ok ? "" : `Off: ${f.applies_when.reason}.`;
      if (hide) {
        const fs = row.closest("fieldset");
        hiddenBySection.set(fs, [...(hiddenBySection.get(fs) || []), `${row.querySelector("label").textContent.trim()} (${f.applies_when.reason})`]);
      }
    }
    for (const fs of this.root.querySelectorAll("fieldset")) {
      const names = hiddenBySection.get(fs) || [];
      fs.querySelector(".hidden-note").textContent = names.length ? `Hidden, as they do not apply: ${names.join("; ")}.` : "";
    }
  }

  clearErrors() {
    document.querySelectorAll("[data-error-for]").forEach((e) => { e.textContent = ""; });
  }

  // Puts each message of a 422 next to the field it names; returns the ones with no place.
  showErrors(detail) {
    const orphans = [];
    for (const d of Array.isArray(detail) ? detail : [{ msg: String(detail) }]) {
      const slot = d.field && document.querySelector(`[data-error-for="${d.field}"]`);
      if (slot) slot.textContent = d.msg;
      else orphans.push(d.msg);
    }
    return orphans;
  }
}
