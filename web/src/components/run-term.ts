// xterm.js and its stylesheet, loaded on demand (dynamic import) by a run's live view so the
// dashboard's first load stays small.
import "@xterm/xterm/css/xterm.css";

export { Terminal } from "@xterm/xterm";
export { FitAddon } from "@xterm/addon-fit";
