//! The graph of a workflow's steps: indices, what each needs and what needs it, cycles, the
//! ancestors a step may read from, and the graph drawn as text.

use std::collections::HashMap;

use crate::def::{Step, Workflow};

/// The main steps of a workflow as a graph (by index in `steps`).
#[derive(Debug, Clone)]
pub struct Graph {
    pub ids: Vec<String>,
    pub index: HashMap<String, usize>,
    pub needs: Vec<Vec<usize>>,
    pub dependants: Vec<Vec<usize>>,
}

impl Graph {
    /// The graph of `steps` (needs that name no step are left out: `check` reports them).
    pub fn new(steps: &[Step]) -> Graph {
        let ids: Vec<String> = steps.iter().map(|s| s.id.clone()).collect();
        let index: HashMap<String, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let mut needs = vec![Vec::new(); steps.len()];
        let mut dependants = vec![Vec::new(); steps.len()];
        for (i, s) in steps.iter().enumerate() {
            for n in &s.needs {
                if let Some(&j) = index.get(n)
                    && j != i
                    && !needs[i].contains(&j)
                {
                    needs[i].push(j);
                    dependants[j].push(i);
                }
            }
        }
        Graph {
            ids,
            index,
            needs,
            dependants,
        }
    }

    /// A cycle, as the ids along it in the direction of `needs` (the first repeated at the
    /// end: `a → c → b → a` when a needs c), if there is one.
    pub fn cycle(&self) -> Option<Vec<String>> {
        // 0: unvisited, 1: on the path, 2: done. Iterative, so a long chain cannot overflow.
        let mut mark = vec![0u8; self.ids.len()];
        for root in 0..self.ids.len() {
            if mark[root] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            mark[root] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&n) = self.needs[node].get(*next) {
                    *next += 1;
                    match mark[n] {
                        0 => {
                            mark[n] = 1;
                            stack.push((n, 0));
                        }
                        1 => {
                            let from = stack.iter().position(|(s, _)| *s == n).unwrap_or(0);
                            let mut path: Vec<String> = stack[from..]
                                .iter()
                                .map(|(s, _)| self.ids[*s].clone())
                                .collect();
                            path.push(self.ids[n].clone());
                            return Some(path);
                        }
                        _ => {}
                    }
                } else {
                    mark[node] = 2;
                    stack.pop();
                }
            }
        }
        None
    }

    /// Every step `i` depends on, directly or not (by index).
    pub fn ancestors(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.ids.len()];
        let mut stack = self.needs[i].clone();
        let mut out = Vec::new();
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut seen[n], true) {
                out.push(n);
                stack.extend(self.needs[n].iter().copied());
            }
        }
        out
    }

    /// Each step's level: 0 for steps that need nothing, else one more than the deepest
    /// step it needs (the graph must have no cycle).
    pub fn levels(&self) -> Vec<usize> {
        let mut level = vec![usize::MAX; self.ids.len()];
        let mut pending: Vec<usize> = self.needs.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..self.ids.len()).filter(|i| pending[*i] == 0).collect();
        for &r in &ready {
            level[r] = 0;
        }
        while let Some(i) = ready.pop() {
            for &d in &self.dependants[i] {
                let l = level[i] + 1;
                level[d] = if level[d] == usize::MAX {
                    l
                } else {
                    level[d].max(l)
                };
                pending[d] -= 1;
                if pending[d] == 0 {
                    ready.push(d);
                }
            }
        }
        level
    }
}

/// The workflow drawn as text: the steps level by level (what runs together), each with
/// what it does, what it needs and its condition; then the failure and final steps.
pub fn draw(wf: &Workflow) -> String {
    let g = Graph::new(&wf.steps);
    let levels = g.levels();
    let depth = levels.iter().copied().filter(|l| *l != usize::MAX).max();
    let mut out = String::new();
    let width = wf.steps.iter().map(|s| s.id.len()).max().unwrap_or(0);
    for level in 0..=depth.unwrap_or(0) {
        let at: Vec<usize> = (0..wf.steps.len())
            .filter(|i| levels[*i] == level)
            .collect();
        if at.is_empty() {
            continue;
        }
        for &i in &at {
            let s = &wf.steps[i];
            let arrow = if s.needs.is_empty() {
                String::new()
            } else {
                format!("◀── {}", s.needs.join(", "))
            };
            out.push_str(&format!(
                "  [{level}] {:width$}  {:<24} {arrow}{}\n",
                s.id,
                describe(s),
                s.condition
                    .as_deref()
                    .map(|c| format!("  if {}", crate::expr::condition_source(c)))
                    .unwrap_or_default(),
            ));
        }
    }
    for (name, list) in [("on failure", &wf.on_failure), ("always", &wf.always)] {
        if !list.is_empty() {
            out.push_str(&format!("  {name}:\n"));
            for s in list {
                out.push_str(&format!("    {:width$}  {}\n", s.id, describe(s)));
            }
        }
    }
    out
}

/// What a step does, in a few words.
pub fn describe(s: &Step) -> String {
    let a = &s.action;
    let mut d = if a.run.is_some() {
        "command".to_string()
    } else if a.script.is_some() {
        format!("script ({})", a.lang.as_deref().unwrap_or("#!"))
    } else if let Some(j) = &a.uses {
        format!("job {j}")
    } else if a.http.is_some() {
        "http".to_string()
    } else if a.notify.is_some() {
        "notify".to_string()
    } else if let Some(w) = &a.workflow {
        format!("workflow {w}")
    } else if let Some(l) = &a.langflow {
        format!(
            "langflow {}",
            l.get("flow").and_then(|f| f.as_str()).unwrap_or("?")
        )
    } else {
        "?".to_string()
    };
    if let Some(t) = &s.exec.targets {
        d.push_str(&format!(" on {}", t.join(",")));
    }
    d
}
