"""The commented case skeleton that ``incident new`` writes: one item of every evidence family, each
line explained. It validates as written (tests/spec/test_authoring.py), so an author can edit it step
by step and run ``incident validate`` after each change."""

from __future__ import annotations

SKELETON = """\
# A case file for `incident`: replace every value with your own, delete the items you do not have,
# and run `incident validate THIS_FILE` after each change (errors name the item by id:
# evidence[tail-holes].observed.holes). `incident schema` gives the full JSON Schema.
# Parameters are a number (fixed) or {beta: [a, b]}, {gamma: [shape, rate]}, {normal: [mu, sigma]},
# {halfnormal: sigma}, {dirichlet: {type: alpha, other: a0}}. A parameter is looked up in the item's
# under.<hypothesis>, then under.default, then the hypothesis's overrides.<family>, then its mechanism
# in priors/mechanisms.yaml.

case:
  id: my-incident-2025            # 1-64 lowercase letters, digits, '-' or '_'
  title: What happened, in one line
  date: 2025-01-31                # the incident's date
  description: >-
    A short account of the incident and of the question the case answers.

sources:                          # who reported what; every evidence item names one
  - id: investigators
    title: Preliminary report of the investigating authority
    citation: report.pdf          # or url: https://...
    reliability: official_investigation   # a profile of priors/sources.yaml, {beta: [a, b]} or a number in (0, 1]
  - id: ministry
    title: Statement of a ministry with a stake in the outcome
    reliability: party_to_conflict

hypotheses:                       # at least two; priors are normalised
  - id: external
    description: A missile warhead burst near the aircraft
    prior: 0.5                    # or {base_rate: NAME} from priors/base_rates.yaml
    mechanism: proximity_fragmentation   # a mechanism of priors/mechanisms.yaml
    reasoning: why this prior
  - id: internal
    description: An explosion inside the aircraft
    prior: 0.5
    mechanism: internal_explosion
    overrides: {timing: {in_window: 0.05}}   # any family parameter, for this hypothesis

evidence:
  # perforations: holes counted in one region; their bending and sizes
  - id: tail-holes
    family: perforations
    source: investigators
    description: Holes in the rear fuselage
    group: null                   # items reporting the same fact share a group and count once
    restates: null                # or the id of an item whose information this one repeats (another
                                  # source's account of the same video, in any family): it then adds no
                                  # term; its source joins that item's unit, so the fact counts once
    cites: [{file: report.pdf, quote: "the exact sentence the numbers come from"}]
    observed: {region: rear fuselage, holes: 12, exposure: 1.0, assessed: 10, inward: 9, sizes_mm: [8, 12, 15]}

  # fragments: recovered fragment types (ball, blade, bowtie, cube, diamond, disc, natural, rod, ...); unlisted types count 0
  - id: recovered-fragments
    family: fragments
    source: investigators
    observed: {counts: {cube: 4, natural: 2, cylinder: 0}}

  # timing: when the damage happened against a window of activity, in minutes from the period's
  # start (or clock times with a timezone, e.g. 2025-01-31T08:15:00+00:00)
  - id: damage-time
    family: timing
    source: investigators
    observed:
      time: 42.0                  # the reported time of the damage
      window: [30.0, 60.0]        # the activity (e.g. an air-defence engagement)
      period: [0.0, 90.0]         # the whole observation period, containing the window
      clock_sd_min: 2.0           # clock error, minutes: a number > 0 or {halfnormal: s}
      rounding_min: 0.0           # the report rounds to this many minutes
      window_label: air-defence engagement

  # interval: a duration in seconds (a warning before a strike, a gap between two detonations)
  - id: warning-gap
    family: interval
    source: ministry
    observed: {seconds: 60, what: warning given before the strike}
    under:                        # per-hypothesis parameters of this item
      external: {log_median: {normal: [3.4, 1.0]}}

  # claim: a statement a source asserted; interest (the source's): serves | neutral | against |
  # claims_responsibility (a group claiming an attack it gains from claiming) | settlement (words
  # given as part of a deal); each class has its assertion rate in priors/sources.yaml
  - id: ministry-denial
    family: claim
    source: ministry
    observed:
      statement: Our air defence was not active at the time
      interest: serves
    under:                        # holds: P(the statement is true | hypothesis)
      external: {holds: 0.2}
      internal: {holds: 0.8}

  # elicited: any other observation, with P(observation | hypothesis) given directly
  - id: debris-field
    family: elicited
    source: investigators
    observed: {statement: Debris spread over 5 km along the track}
    under:
      external: {p: {beta: [6, 4]}}
      internal: {p: 0.4}

  # presence: a diagnostic thing looked for (explosive-residue, bowtie-fragments, bird-remains,
  # engine-fragments, weapon-parts, ...), found: true or false; "not found" is evidence too
  - id: residue-search
    family: presence
    source: investigators
    observed:
      thing: explosive-residue    # P(present | hypothesis) from the mechanism's presence table (else its `other`)
      found: false
      detection: {beta: [9, 1]}   # P(the search finds it | it is there): a number in (0, 1] or {beta: [a, b]};
                                  # default {beta: [1, 1]}; ~[9, 1] lab trace analysis, ~[2, 3] a field look
      searched: laboratory swabs of the cabin floor and the cargo hold

  # damage_map: inspected panels (rectangles in the body frame, metres, x forward; edge1 x edge2 is
  # the outward normal) and the holes found on them; a panel under counts has a count only
  - id: hole-map
    family: damage_map
    source: investigators
    observed:
      aircraft_speed: 230         # m/s along body x
      panels:
        - {id: tail-side, corner: [20.0, 1.9, -1.0], edge1: [0, 0, 2.0], edge2: [3.0, 0, 0]}
        - {id: tail-top, corner: [20.0, -1.9, 1.0], edge1: [3.0, 0, 0], edge2: [0, 3.8, 0]}
      holes:
        - {panel: tail-side, at: [21.2, 1.9, 0.3], bend: in, elongation: 1.6}   # bend and elongation optional
      counts:
        - {panel: tail-top, holes: 4}
    under:                        # the burst point and the weapon's course, per case
      default: {burst_x: {normal: [22, 3]}, burst_y: {normal: [4, 3]}, burst_z: {normal: [0, 3]},
                axis_x: {normal: [-1, 1]}, axis_y: {normal: [0, 1]}, axis_z: {normal: [0, 1]}}
      internal: {burst_y: {normal: [0, 1]}, axis_x: 1, axis_y: 0, axis_z: 0, weapon_speed: 230}
"""
