-- wrk: every request a question never asked before in the run (a support question built from parts:
-- 16 openers x 32 questions x 24 products x 12 endings = 147,456 texts, walked with a stride so neighbours
-- differ in every part). Same body for the floor and the gateway.
local openers = {"Hi,", "Hello,", "Hey there,", "Good morning,", "Quick question:", "Sorry to bother you,",
  "Bonjour,", "Salut,", "Excuse me,", "Hi team,", "Hello again,", "Dear support,", "Hiya,", "Bonsoir,",
  "Allo,", "Greetings,"}
local questions = {"how do I get a refund for the", "where is my order with the", "can I return the",
  "how long does delivery take for the", "do you ship internationally the", "how do I cancel my order of the",
  "is there a warranty on the", "can I exchange the", "what payment methods can I use for the",
  "how do I track the", "comment me faire rembourser le", "où est ma commande avec le",
  "puis-je retourner le", "quel est le délai de livraison pour le", "comment annuler la commande du",
  "y a-t-il une garantie sur le", "is the following in stock:", "do you have a promo code for the",
  "how do I use a gift card on the", "can I pay in installments for the", "why was I charged twice for the",
  "how do I change the delivery address for the", "can I pick up in store the", "what sizes exist for the",
  "est-ce que vous livrez le", "how do I reset my password to buy the", "do you price match the",
  "is gift wrapping available for the", "can I order by phone the", "what are your opening hours to collect the",
  "how do I download the invoice for the", "can I get a discount on the"}
local products = {"blue running shoes", "wool winter coat", "espresso machine", "leather handbag",
  "kids bicycle", "garden chairs", "noise cancelling headphones", "yoga mat", "cast iron pan",
  "linen shirt", "desk lamp", "hiking backpack", "robe d'été", "chaussures de randonnée",
  "machine à café", "sac à dos", "smart watch", "silk scarf", "ceramic vase", "board game",
  "camping tent", "electric kettle", "denim jacket", "phone case"}
local endings = {"?", " please?", ", thanks!", " today?", "? merci", " asap?", " this week?",
  "? Thank you.", " before Friday?", "? cheers", " s'il vous plaît ?", " for my sister?"}
local n = 0
local total = #openers * #questions * #products * #endings
local thread_id = 0
setup = function(thread) thread:set("thread_id", thread_id); thread_id = thread_id + 1 end
request = function()
  n = n + 1
  local i = ((n * 7919 + thread_id * 104729 + os.time() * 31) % total)
  local o = i % #openers; i = math.floor(i / #openers)
  local q = i % #questions; i = math.floor(i / #questions)
  local p = i % #products; i = math.floor(i / #products)
  local e = i % #endings
  local text = openers[o + 1] .. " " .. questions[q + 1] .. " " .. products[p + 1] .. endings[e + 1]
  local body = '{"model":"gpt-3.5-turbo","messages":[{"role":"system","content":"You are a helpful support ' ..
    'assistant for Aurora Commerce."},{"role":"user","content":"' .. text .. '"}]}'
  return wrk.format("POST", "/v1/chat/completions",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer sk-bench"}, body)
end
