; a comment
(ConceptNode "cat" (stv 0.9 0.8))
(Inheritance (stv 0.5 0.25)
    (Concept "cat")
    (Concept "animal"))
(EvaluationLink (av 1 2) (Predicate "likes") (List (Concept "a") (Concept "b \"q\"")))
