; PLN test data derived from the SUMO ontology, as an AtomSpace of 2014
; wrote it: every atom with its three-number attention value (av 0 0 0).
; Source: github.com/opencog/opencog, commit 3d3c708a2e6548bb84708bddb7d4fc49a57588c1,
; tests/python/test_pln/scm/sumo/living-organism.scm (AGPL-3.0), unchanged
; apart from this comment.
(ImplicationLink (av 0 0 0) (stv 0.900000 0.111111)
  (EvaluationLink (av 0 0 0) (stv 0.000000 0.000000)
    (PredicateNode "attribute" (av 0 0 0) (stv 0.100000 0.111111))
    (ListLink (av 0 0 0) (stv 0.000000 0.000000)
      (VariableNode "?X" (av 0 0 0) (stv 0.000000 0.000000))
      (ConceptNode "Living" (av 0 0 0) (stv 0.010000 0.555556))
    )
  )
  (MemberLink (av 0 0 0) (stv 0.000000 0.000000)
    (VariableNode "?X" (av 0 0 0) (stv 0.000000 0.000000))
    (ConceptNode "Organism" (av 0 0 0) (stv 0.010000 0.555556))
  )
)

(EvaluationLink (av 0 0 0) (stv 0.900000 0.111111)
  (PredicateNode "attribute" (av 0 0 0) (stv 0.100000 0.111111))
  (ListLink (av 0 0 0) (stv 0.000000 0.000000)
    (ConceptNode "Organism12-1" (av 0 0 0) (stv 0.010000 0.555556))
    (ConceptNode "Living" (av 0 0 0) (stv 0.010000 0.555556))
  )
)

(EvaluationLink
  (PredicateNode "query" (av 0 0 0) (stv 0.100000 0.111111))
  (ListLink (av 0 0 0) (stv 0.000000 0.000000)
    (MemberLink (av 0 0 0) (stv 0.000000 0.000000)
      (ConceptNode "Organism12-1" (av 0 0 0) (stv 0.010000 0.555556))
      (ConceptNode "Organism" (av 0 0 0) (stv 0.010000 0.555556))
    )
  )
)

(EvaluationLink
  (PredicateNode "rules")
  (ListLink (ConceptNode "ModusPonensRule (ImplicationLink VariableNode -> VariableNode)")
  )
)
